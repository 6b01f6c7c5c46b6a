package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// rtEvent is one line of `routetrace trace --output json`: only the fields
// the checks use. Field names are routetrace's public JSON interface.
type rtEvent struct {
	Time        string   `json:"time"`
	Op          string   `json:"op"`
	Object      string   `json:"object"`
	Family      string   `json:"family"`
	Table       int      `json:"table"`
	Errno       int      `json:"errno"`
	Origin      string   `json:"origin"`
	Path        string   `json:"path"`
	Attach      string   `json:"attach"`
	Netns       uint64   `json:"netns"`
	Count       int      `json:"count"`
	Dst         string   `json:"dst"`
	Src         string   `json:"src"`
	Type        string   `json:"type"`
	Metric      uint32   `json:"metric"`
	Oif         int      `json:"oif"`
	Priority    uint32   `json:"priority"`
	Iif         string   `json:"iif"`
	OifName     string   `json:"oif_name"`
	ProtocolNum int      `json:"protocol_num"`
	Actor       rtActor  `json:"actor"`
	Cause       *rtCause `json:"cause"`
	// A policy's judgement (trace --policy, enforce).
	Verdict       string  `json:"verdict"`
	ProtectedBy   string  `json:"protected_by"`
	VerdictReason string  `json:"verdict_reason"`
	MissingUs     *uint64 `json:"missing_us"`

	line string
}

type rtActor struct {
	Pid      uint32 `json:"pid"`
	Comm     string `json:"comm"`
	CgroupID uint64 `json:"cgroup_id"`
	Kernel   bool   `json:"kernel"`
	// Enrichment: the kernel's record of the process.
	Unit    string   `json:"unit"`
	Exe     string   `json:"exe"`
	Cmdline []string `json:"cmdline"`
	Cgroup  string   `json:"cgroup"`
}

type rtCause struct {
	Object  string  `json:"object"`
	Op      string  `json:"op"`
	Ifindex int     `json:"ifindex"`
	Prefix  string  `json:"prefix"`
	Actor   rtActor `json:"actor"`
}

func readEvents(path string) ([]*rtEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading routetrace output: %w", err)
	}
	defer f.Close()
	var evs []*rtEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ev := &rtEvent{line: line}
		if err := json.Unmarshal([]byte(line), ev); err != nil {
			return nil, fmt.Errorf("routetrace printed a line that is not JSON: %q: %w", line, err)
		}
		evs = append(evs, ev)
	}
	return evs, sc.Err()
}

// key gives the event the key its object has in a snapshot.
func (ev *rtEvent) key() (string, error) {
	switch ev.Object {
	case "route":
		dst, err := parsePrefix(ev.Dst, ev.Family)
		if err != nil {
			return "", fmt.Errorf("event dst %q: %w", ev.Dst, err)
		}
		typ, ok := routeTypeNums[ev.Type]
		if !ok {
			return "", fmt.Errorf("event route type %q unknown", ev.Type)
		}
		return routeKey(ev.Family, ev.Table, typ, dst, ev.Metric, ev.Oif), nil
	case "rule":
		norm := func(s string) (string, error) {
			if s == "" {
				return "", nil
			}
			p, err := parsePrefix(s, ev.Family)
			if err != nil {
				return "", err
			}
			return p.Masked().String(), nil
		}
		src, err := norm(ev.Src)
		if err != nil {
			return "", fmt.Errorf("event rule src %q: %w", ev.Src, err)
		}
		dst, err := norm(ev.Dst)
		if err != nil {
			return "", fmt.Errorf("event rule dst %q: %w", ev.Dst, err)
		}
		return ruleKey(ev.Family, ev.Priority, src, dst, ev.Iif, ev.OifName, ev.Table), nil
	}
	return "", fmt.Errorf("object %q has no snapshot key", ev.Object)
}

// networkd is who may remove things in the scenario.
type networkd struct {
	pid    uint32
	cgroup uint64
	// What enrichment must name it by: /proc/PID/cmdline and exe, read
	// when the scenario started.
	cmdline []string
	exe     string
}

// networkdUnit and networkdCgroupPath are what the actor's unit and cgroup
// must say (cgroup v2 in the VM).
const (
	networkdUnit       = "systemd-networkd.service"
	networkdCgroupPath = "/system.slice/systemd-networkd.service"
)

// comm is what the kernel keeps of "systemd-networkd": TASK_COMM_LEN is 16
// with the terminating NUL.
const networkdComm = "systemd-network"

func (n networkd) is(a rtActor) bool {
	return !a.Kernel && a.Pid == n.pid && a.Comm == networkdComm && a.CgroupID == n.cgroup &&
		a.Unit == networkdUnit && a.Cgroup == networkdCgroupPath && a.Exe == n.exe && slices.Equal(a.Cmdline, n.cmdline)
}

func (n networkd) String() string {
	return fmt.Sprintf("pid %d, cgroup %d, unit %s, cgroup %s, exe %s, cmdline %q", n.pid, n.cgroup, networkdUnit, networkdCgroupPath, n.exe, n.cmdline)
}

// verdict is the outcome of one tier x scenario run.
type verdict struct {
	skip     string
	failures []string
	notes    []string
	removed  int // routes and rules present before and gone after
	reported int // of those, reported deleted
	kernel   int // of those, reported as the kernel's on networkd's behalf
	// Verdicts routetrace gave (enforce variants), and how long each
	// repaired object was missing.
	blocked, wouldBlock, repaired int
	missingUs                     []uint64
}

// missing is the median and worst time repaired state was missing, in µs.
func (v *verdict) missing() (median, worst uint64) {
	if len(v.missingUs) == 0 {
		return 0, 0
	}
	m := slices.Sorted(slices.Values(v.missingUs))
	return m[len(m)/2], m[len(m)-1]
}

// log prints the notes and failures to the console log.
func (v *verdict) log() {
	for _, n := range v.notes {
		fmt.Printf("INCIDENT-LOG   note: %s\n", n)
	}
	for _, f := range v.failures {
		fmt.Printf("INCIDENT-LOG   FAIL: %s\n", f)
	}
}

func (v *verdict) failf(format string, args ...any) {
	v.failures = append(v.failures, fmt.Sprintf(format, args...))
}

func (v *verdict) reason() string {
	if v.skip != "" {
		return v.skip
	}
	if len(v.failures) == 0 {
		return "-"
	}
	s := v.failures[0]
	if len(v.failures) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(v.failures)-1)
	}
	return s
}

// check compares routetrace's report with the two snapshots. For every
// object it replays the object's reported adds and deletes from its state
// before: a delete of an object already absent is a duplicate, and the
// replayed state must end as the after snapshot has it. So a removal
// reported zero or two times fails, and so does a survivor reported deleted
// unless it was also reported re-added. Every delete of an object that
// existed before must come from networkd, or from the kernel with networkd's
// request as its cause. A removal routetrace repaired (verdict repaired)
// counts as the delete and the re-add, which routetrace does not report as
// a change of its own. Every tier is held to this: tier 3 used to miss
// IPv4 flushes (the kernel notifies none) and now finds them by diffing
// dumps, so it gets no allowance.
func check(v *verdict, evs []*rtEvent, before, after *snapshot, nd networkd, netns uint64) {
	beforeObjs, afterObjs := before.objects(), after.objects()
	byKey := map[string][]*rtEvent{}
	for _, ev := range evs {
		if ev.Netns != netns || ev.Errno != 0 || (ev.Object != "route" && ev.Object != "rule") {
			continue
		}
		if ev.Op != "add" && ev.Op != "replace" && ev.Op != "delete" {
			continue // flush: a count, each route is also reported on its own
		}
		k, err := ev.key()
		if err != nil {
			v.failf("%v in %s", err, ev.line)
			continue
		}
		byKey[k] = append(byKey[k], ev)
	}
	keys := map[string]bool{}
	for k := range beforeObjs {
		keys[k] = true
	}
	for k := range afterObjs {
		keys[k] = true
	}
	for k := range byKey {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		_, was := beforeObjs[k]
		_, is := afterObjs[k]
		present, deletes := was, 0
		for _, ev := range byKey[k] {
			switch ev.Op {
			case "delete":
				deletes++
				if !present {
					v.failf("%s reported deleted while already absent (duplicate report): %s", k, ev.line)
				}
				// A repaired removal reports the object put back as well:
				// routetrace does not report its own re-add as a change.
				present = ev.Verdict == verdictRepaired
				if was {
					checkActor(v, k, ev, beforeObjs[k], nd)
				}
			default:
				present = true
			}
		}
		if was && !is {
			v.removed++
			if deletes > 0 {
				v.reported++
				if last := lastDelete(byKey[k]); last != nil && last.Origin == "kernel" {
					v.kernel++
				}
			}
		}
		if present != is {
			switch {
			case was && !is && deletes == 0:
				v.failf("%s removed (before: %s) but not reported", k, beforeObjs[k])
			case was && is:
				v.failf("%s survived (%s) but is reported deleted and not re-added", k, afterObjs[k])
			default:
				v.failf("%s: reported adds and deletes do not add up to its state after (before %t, after %t)", k, was, is)
			}
			for _, ev := range byKey[k] {
				v.notes = append(v.notes, "  "+ev.line)
			}
		} else if was && is && deletes > 0 {
			v.notes = append(v.notes, fmt.Sprintf("%s deleted and re-added, %d times", k, deletes))
			for _, ev := range byKey[k] {
				v.notes = append(v.notes, "  "+ev.line)
			}
		}
	}
}

func lastDelete(evs []*rtEvent) *rtEvent {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Op == "delete" {
			return evs[i]
		}
	}
	return nil
}

// checkActor: a route the kernel made (proto kernel) can only have been
// removed by the kernel; anything else may be removed by networkd itself or
// by the kernel because of a networkd request.
func checkActor(v *verdict, k string, ev *rtEvent, beforeJSON string, nd networkd) {
	if ev.Origin == "kernel" {
		switch {
		case !ev.Actor.Kernel:
			v.failf("%s: origin kernel but actor is not the kernel: %s", k, ev.line)
		case ev.Cause == nil:
			v.failf("%s: removed by the kernel with no cause: %s", k, ev.line)
		case !nd.is(ev.Cause.Actor):
			v.failf("%s: removed by the kernel, cause actor is not networkd (%s): %s", k, nd, ev.line)
		}
		return
	}
	if ev.Object == "route" && ev.ProtocolNum == 2 {
		v.failf("%s: a proto kernel route reported as removed by a request, not by the kernel: %s", k, ev.line)
	}
	if !nd.is(ev.Actor) {
		v.failf("%s: actor is not networkd (comm %s, %s): %s", k, networkdComm, nd, ev.line)
	}
}
