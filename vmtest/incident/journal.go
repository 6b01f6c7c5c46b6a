package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// The journal half of the scenario. Each run's routetrace journals into a
// state directory of its own, so that afterwards `routetrace history` must
// print exactly the event lines trace printed, and `routetrace why`, asked
// about a route networkd removed, must answer from that journal alone with
// what trace reported live: the route, networkd by pid, unit and command
// line, its burst, and the networkd.conf settings that stop it.

// whyGap is the quiet time that ends a burst in `routetrace why`: one
// process's changes less than a second apart are one burst (its --help).
// Written out here rather than taken from package forensics, so that the
// check holds the code to its documented meaning, not to itself.
const whyGap = time.Second

// toolTimeout bounds one history or why run: a few hundred events under
// TCG take a second; a hang must not stall the whole boot.
const toolTimeout = 2 * time.Minute

// whyReport is `routetrace why --output json`: only the fields the checks
// use. Field names are routetrace's public JSON interface.
type whyReport struct {
	Target        string            `json:"target"`
	Answer        string            `json:"answer"`
	EventsScanned int               `json:"events_scanned"`
	EventsFailed  int               `json:"events_failed"`
	Undecodable   int               `json:"undecodable"`
	NotKept       int               `json:"objects_not_kept"`
	Changes       []json.RawMessage `json:"changes"`
	Advice        []whyAdvice       `json:"advice"`
}

type whyChange struct {
	Match   string   `json:"match"`
	State   string   `json:"state"`
	Seen    int      `json:"changes_seen"`
	Last    whyEvent `json:"last"`
	Burst   whyBurst `json:"burst"`
	Removal *struct {
		Event whyEvent `json:"event"`
		Burst whyBurst `json:"burst"`
	} `json:"removal"`
}

type whyEvent struct {
	Time        string    `json:"time"`
	Op          string    `json:"op"`
	Object      string    `json:"object"`
	Family      string    `json:"family"`
	Table       int       `json:"table"`
	Origin      string    `json:"origin"`
	Path        string    `json:"path"`
	Netns       uint64    `json:"netns"`
	Dst         string    `json:"dst"`
	Type        string    `json:"type"`
	Metric      *uint32   `json:"metric"`
	Oif         int       `json:"oif"`
	Actor       whyActor  `json:"actor"`
	Cause       *whyCause `json:"cause"`
	Responsible string    `json:"responsible"`
}

type whyActor struct {
	Kernel   bool     `json:"kernel"`
	Pid      uint32   `json:"pid"`
	Comm     string   `json:"comm"`
	CgroupID uint64   `json:"cgroup_id"`
	Enriched bool     `json:"enriched"`
	Unit     string   `json:"unit"`
	Exe      string   `json:"exe"`
	Cmdline  []string `json:"cmdline"`
	Cgroup   string   `json:"cgroup"`
}

type whyCause struct {
	Object  string   `json:"object"`
	Op      string   `json:"op"`
	Ifindex int      `json:"ifindex"`
	Prefix  string   `json:"prefix"`
	Actor   whyActor `json:"actor"`
	Text    string   `json:"text"`
}

type whyBurst struct {
	Start          string `json:"start"`
	End            string `json:"end"`
	Removals       int    `json:"removals"`
	Routes         whyOps `json:"routes"`
	Rules          whyOps `json:"rules"`
	RoutesByKernel int    `json:"routes_by_kernel"`
	RulesByKernel  int    `json:"rules_by_kernel"`
}

type whyOps struct {
	Add     int `json:"add"`
	Replace int `json:"replace"`
	Delete  int `json:"delete"`
	Flush   int `json:"flush"`
}

func (o whyOps) removals() int { return o.Delete + o.Flush }

type whyAdvice struct {
	Actor string   `json:"actor"`
	Why   string   `json:"why"`
	Steps []string `json:"steps"`
}

// runTool runs routetrace with args, keeping its stdout in dir/name and its
// stderr in dir/name.stderr for the post-mortem, and returns the stdout.
func runTool(bin, dir, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	os.WriteFile(filepath.Join(dir, name), stdout.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, name+".stderr"), stderr.Bytes(), 0o644)
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("routetrace %s: %v: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 3))
	}
	return stdout.Bytes(), nil
}

// excerpt shortens what a tool printed to something a failure line can
// carry; the whole output is in the variant's directory.
func excerpt(b []byte, n int) string {
	s := oneLine(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// checkHistory: `routetrace history --output json` on this run's journal
// must print trace's event lines byte for byte: the journal keeps every
// event as trace emitted it, enrichment included, and history formats it
// with trace's own sink. Only trace's closing {"summary":...} line is
// trace's alone.
func checkHistory(v *verdict, bin, dir, stateDir, traceOut string) {
	out, err := os.ReadFile(traceOut)
	if err != nil {
		v.failf("reading trace's output: %v", err)
		return
	}
	want, ok := withoutSummary(out)
	if !ok {
		v.failf("trace's output does not end with its {\"summary\":...} line: %s", excerpt(out[max(0, len(out)-300):], 300))
		return
	}
	got, err := runTool(bin, dir, "history.json", "history", "--state-dir", stateDir, "--output", "json")
	if err != nil {
		v.failf("%v", err)
		return
	}
	if !bytes.Equal(got, want) {
		v.failf("history differs from trace (history.json vs events.json in %s): %s", dir, firstDifference(want, got))
	}
}

// checkHistoryVerdict: `routetrace history --verdict V --output json` must
// print exactly trace's lines with that verdict, in trace's order.
func checkHistoryVerdict(v *verdict, bin, dir, stateDir string, evs []*rtEvent, verdictName string) {
	var want bytes.Buffer
	for _, ev := range evs {
		if ev.Verdict == verdictName {
			want.WriteString(ev.line + "\n")
		}
	}
	if want.Len() == 0 {
		v.failf("trace reported no %s change: history --verdict %s is not put to the test", verdictName, verdictName)
		return
	}
	got, err := runTool(bin, dir, "history-"+verdictName+".json", "history", "--state-dir", stateDir, "--output", "json", "--verdict", verdictName)
	if err != nil {
		v.failf("%v", err)
		return
	}
	if !bytes.Equal(got, want.Bytes()) {
		v.failf("history --verdict %s differs from trace's %s lines (history-%s.json vs events.json in %s): %s",
			verdictName, verdictName, verdictName, dir, firstDifference(want.Bytes(), got))
	}
}

// withoutSummary is trace's JSON output without its last line, which must
// be the summary.
func withoutSummary(out []byte) ([]byte, bool) {
	if len(out) == 0 || out[len(out)-1] != '\n' {
		return nil, false
	}
	i := bytes.LastIndexByte(out[:len(out)-1], '\n') + 1
	if !bytes.HasPrefix(out[i:], []byte(`{"summary":`)) {
		return nil, false
	}
	return out[:i], true
}

// firstDifference names the first line where got differs from want.
func firstDifference(want, got []byte) string {
	w := strings.SplitAfter(string(want), "\n")
	g := strings.SplitAfter(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("%d bytes vs trace's %d; first difference at line %d: trace %q, history %q",
				len(got), len(want), i+1, excerpt([]byte(wl), 240), excerpt([]byte(gl), 240))
		}
	}
	return "same lines" // not reached: the bytes differ
}

// byNetworkd reports that networkd removed the route: itself, or through a
// request of its that made the kernel remove it.
func byNetworkd(ev *rtEvent, nd networkd) bool {
	if ev.Origin == "kernel" {
		return ev.Cause != nil && nd.is(ev.Cause.Actor)
	}
	return nd.is(ev.Actor)
}

// whyTarget picks the route to ask `routetrace why` about: of the routes
// that were there before, are gone after and were reported deleted by
// networkd (or by the kernel because of networkd), a route someone put
// there (a pod route, proto other than kernel) over one the kernel made
// for an address, then the most specific (fewest host bits), then by key
// so that every tier asks about the same route. It returns the route's
// last reported delete, or nil when networkd removed no route.
func whyTarget(evs []*rtEvent, before, after *snapshot, nd networkd, netns uint64) *rtEvent {
	beforeObjs, afterObjs := before.objects(), after.objects()
	last := map[string]*rtEvent{}
	for _, ev := range evs {
		if ev.Object != "route" || ev.Op != "delete" || ev.Errno != 0 || ev.Netns != netns {
			continue
		}
		k, err := ev.key()
		if err != nil {
			continue // check has reported it
		}
		_, was := beforeObjs[k]
		_, is := afterObjs[k]
		if was && !is {
			last[k] = ev
		}
	}
	type cand struct {
		ev         *rtEvent
		kernelMade bool
		hostBits   int
		key        string
	}
	var cands []cand
	for k, ev := range last {
		if !byNetworkd(ev, nd) {
			continue
		}
		p, err := parsePrefix(ev.Dst, ev.Family)
		if err != nil {
			continue
		}
		cands = append(cands, cand{ev, ev.ProtocolNum == 2, p.Addr().BitLen() - p.Bits(), k})
	}
	if len(cands) == 0 {
		return nil
	}
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.kernelMade != b.kernelMade:
			if a.kernelMade {
				return 1
			}
			return -1
		case a.hostBits != b.hostBits:
			return a.hostBits - b.hostBits
		}
		return strings.Compare(a.key, b.key)
	})
	return cands[0].ev
}

// whyArg is what an SRE would type for the route: its address for a host
// route (a pod's /32), else its prefix. Either way why's answer must call
// the route an exact match.
func whyArg(ev *rtEvent) (string, error) {
	p, err := parsePrefix(ev.Dst, ev.Family)
	if err != nil {
		return "", err
	}
	if p.IsSingleIP() {
		return p.Addr().String(), nil
	}
	return p.Masked().String(), nil
}

// expectBurst is a burst as trace's events show it.
type expectBurst struct {
	start, end                    time.Time
	routes, rules                 whyOps
	routesByKernel, rulesByKernel int
	events                        int
}

// networkdBurst is networkd's burst around at, from trace's events alone:
// its successful route and rule changes in any namespace, kernel removals
// its requests caused included, chained by gaps of at most whyGap.
func networkdBurst(evs []*rtEvent, nd networkd, at time.Time) (expectBurst, error) {
	type timed struct {
		t  time.Time
		ev *rtEvent
	}
	var mine []timed
	for _, ev := range evs {
		if ev.Errno != 0 || (ev.Object != "route" && ev.Object != "rule") {
			continue
		}
		a := ev.Actor
		if ev.Origin == "kernel" && ev.Cause != nil {
			a = ev.Cause.Actor // the kernel's removal counts toward who caused it
		}
		if a.Kernel || a.Pid != nd.pid || a.Comm != networkdComm {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil {
			return expectBurst{}, fmt.Errorf("trace event time %q: %w", ev.Time, err)
		}
		mine = append(mine, timed{t, ev})
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].t.Before(mine[j].t) })
	for i := 0; i < len(mine); {
		j := i + 1
		for j < len(mine) && mine[j].t.Sub(mine[j-1].t) <= whyGap {
			j++
		}
		if at.Before(mine[i].t) || at.After(mine[j-1].t) {
			i = j
			continue
		}
		b := expectBurst{start: mine[i].t, end: mine[j-1].t, events: j - i}
		for _, m := range mine[i:j] {
			ev := m.ev
			n := 1
			if ev.Op == "flush" && ev.Count > 0 {
				n = ev.Count
			}
			ops, byKernel := &b.routes, &b.routesByKernel
			if ev.Object == "rule" {
				ops, byKernel = &b.rules, &b.rulesByKernel
			}
			switch ev.Op {
			case "add":
				ops.Add += n
			case "replace":
				ops.Replace += n
			case "delete":
				ops.Delete += n
			case "flush":
				ops.Flush += n
			}
			if ev.Origin == "kernel" && (ev.Op == "delete" || ev.Op == "flush") {
				*byKernel += n
			}
		}
		return b, nil
	}
	return expectBurst{}, fmt.Errorf("trace reported no change by networkd (pid %d) at %s", nd.pid, at.Format(time.RFC3339Nano))
}

// jsonTime is the layout of times in trace's and why's JSON.
const jsonTime = "2006-01-02T15:04:05.000000000Z07:00"

func (b expectBurst) json() whyBurst {
	return whyBurst{
		Start: b.start.UTC().Format(jsonTime), End: b.end.UTC().Format(jsonTime),
		Removals: b.routes.removals() + b.rules.removals(), Routes: b.routes, Rules: b.rules,
		RoutesByKernel: b.routesByKernel, RulesByKernel: b.rulesByKernel,
	}
}

// networkdName is how why names networkd as the one responsible: its unit,
// then comm[pid] and executable.
func networkdName(nd networkd) string {
	return fmt.Sprintf("%s (%s[%d], %s)", networkdUnit, networkdComm, nd.pid, nd.exe)
}

// isNetworkd: why's actor is networkd, named as trace named it.
func (n networkd) isWhy(a whyActor) bool {
	return !a.Kernel && a.Enriched && a.Pid == n.pid && a.Comm == networkdComm && a.CgroupID == n.cgroup &&
		a.Unit == networkdUnit && a.Cgroup == networkdCgroupPath && a.Exe == n.exe && slices.Equal(a.Cmdline, n.cmdline)
}

// checkWhy checks why's JSON answer for arg, the route tgt's destination,
// against trace's events: what it read, the route's change, who is
// responsible, the burst and the advice.
func checkWhy(v *verdict, out []byte, arg string, tgt *rtEvent, evs []*rtEvent, nd networkd, netns uint64) {
	failf := func(format string, args ...any) {
		v.failf("why %s: %s", arg, fmt.Sprintf(format, args...))
	}
	var rep whyReport
	if err := json.Unmarshal(out, &rep); err != nil {
		failf("not one JSON report: %v: %s", err, excerpt(out, 300))
		return
	}
	// What it read: every event trace printed, each decoded.
	lines, failed := 0, 0
	seen := map[[3]string]bool{}
	for _, ev := range evs {
		if ev.Op == "" {
			continue // the summary line
		}
		lines++
		if ev.Errno != 0 {
			failed++
		}
		seen[[3]string{ev.Time, ev.Op, ev.Object}] = true
	}
	if rep.Target != arg || rep.Answer != "found" || rep.EventsScanned != lines || rep.EventsFailed != failed || rep.Undecodable != 0 || rep.NotKept != 0 {
		failf("target %q answer %q, %d events scanned, %d failed, %d undecodable, %d objects not kept; want %q found, %d, %d, 0, 0",
			rep.Target, rep.Answer, rep.EventsScanned, rep.EventsFailed, rep.Undecodable, rep.NotKept, arg, lines, failed)
	}

	tgtKey, err := tgt.key()
	if err != nil {
		failf("%v", err)
		return
	}
	wantDst, _ := parsePrefix(tgt.Dst, tgt.Family)
	var changes []whyChange
	var match []int
	for i, raw := range rep.Changes {
		var c whyChange
		if err := json.Unmarshal(raw, &c); err != nil {
			failf("change %d: %v: %s", i, err, excerpt(raw, 300))
			return
		}
		changes = append(changes, c)
		// Nothing invented: every change shown is one trace reported.
		for _, e := range []*whyEvent{&c.Last, removalEvent(&c)} {
			if e != nil && !seen[[3]string{e.Time, e.Op, e.Object}] {
				failf("change %d is no event of trace's (%s %s at %s): %s", i, e.Op, e.Object, e.Time, excerpt(raw, 300))
			}
		}
		l := &c.Last
		if l.Object == "route" && l.Family == tgt.Family && l.Table == tgt.Table && l.Dst == wantDst.Masked().String() &&
			l.Metric != nil && *l.Metric == tgt.Metric && l.Type == tgt.Type && l.Oif == tgt.Oif && l.Netns == netns {
			match = append(match, i)
		}
	}
	if len(match) != 1 {
		failf("%d changes for %s, want 1: %s", len(match), tgtKey, excerpt(out, 400))
		return
	}
	raw, c := rep.Changes[match[0]], &changes[match[0]]
	cfail := func(format string, args ...any) {
		failf("%s: %s (change: %s)", tgtKey, fmt.Sprintf(format, args...), excerpt(raw, 400))
	}
	l := &c.Last
	// The route's own change: trace's last delete of it, which is also
	// every change the journal has of it.
	changesSeen := 0
	for _, ev := range evs {
		if k, err := ev.key(); err == nil && k == tgtKey && ev.Errno == 0 && ev.Netns == netns && ev.Op != "flush" {
			changesSeen++
		}
	}
	if c.Match != "exact" || c.State != "deleted" || c.Seen != changesSeen || c.Removal != nil {
		cfail("match %q state %q, %d changes seen, removal %t; want exact, deleted, %d, false", c.Match, c.State, c.Seen, c.Removal != nil, changesSeen)
	}
	if l.Time != tgt.Time || l.Op != "delete" || l.Origin != tgt.Origin || l.Path != tgt.Path {
		cfail("last change %s %s origin %s path %q; want trace's delete at %s origin %s path %q", l.Op, l.Time, l.Origin, l.Path, tgt.Time, tgt.Origin, tgt.Path)
	}
	// Who: networkd, by unit, comm, MainPID, cgroup and its exact command
	// line; for a kernel removal, as the cause's actor.
	if l.Responsible != networkdName(nd) {
		cfail("responsible %q, want %q", l.Responsible, networkdName(nd))
	}
	if tgt.Origin == "kernel" {
		tc := tgt.Cause
		switch {
		case !l.Actor.Kernel:
			cfail("a kernel removal whose actor is not the kernel")
		case l.Cause == nil:
			cfail("a kernel removal without its cause")
		case l.Cause.Object != tc.Object || l.Cause.Op != tc.Op || l.Cause.Ifindex != tc.Ifindex || l.Cause.Prefix != tc.Prefix:
			cfail("cause %s %s ifindex %d prefix %q; trace reported %s %s ifindex %d prefix %q",
				l.Cause.Op, l.Cause.Object, l.Cause.Ifindex, l.Cause.Prefix, tc.Op, tc.Object, tc.Ifindex, tc.Prefix)
		case !nd.isWhy(l.Cause.Actor):
			cfail("cause actor is not networkd (%s)", nd)
		case tc.Object == "address" && !containsWord(l.Cause.Text, " because "+networkdName(nd)+" deleted address "+tc.Prefix):
			cfail("cause text %q does not say networkd (%s) deleted address %s", l.Cause.Text, networkdName(nd), tc.Prefix)
		case !strings.Contains(l.Cause.Text, networkdName(nd)):
			cfail("cause text %q does not name networkd (%s)", l.Cause.Text, networkdName(nd))
		}
	} else {
		if !nd.isWhy(l.Actor) {
			cfail("actor is not networkd (%s)", nd)
		}
		if l.Cause != nil {
			cfail("a removal by request with a cause")
		}
	}
	// The burst: what trace reported networkd did around that removal.
	at, err := time.Parse(time.RFC3339Nano, tgt.Time)
	if err != nil {
		cfail("trace event time %q: %v", tgt.Time, err)
		return
	}
	eb, err := networkdBurst(evs, nd, at)
	if err != nil {
		cfail("%v", err)
		return
	}
	if want := eb.json(); c.Burst != want {
		cfail("burst %+v; trace's events by networkd give %+v", c.Burst, want)
	}
	if n := networkdChanges(evs, nd); eb.events != n {
		// Not wrong: a burst ends at a second's quiet, and TCG is slow.
		v.notes = append(v.notes, fmt.Sprintf("networkd's changes make more than one burst: the one around %s holds %d of its %d", tgt.Time, eb.events, n))
	}

	// Every other change shown that counts toward networkd carries its
	// burst as trace's events make it too. The advice is networkd's, asking
	// for ManageForeignRoutes=no when the bursts behind the removals shown
	// had networkd delete routes itself, ManageForeignRoutingPolicyRules=no
	// when they had it delete rules.
	routes, rules, networkdShown := false, false, false
	for i := range changes {
		c := &changes[i]
		type shown struct {
			e *whyEvent
			b whyBurst
		}
		all := []shown{{&c.Last, c.Burst}}
		if c.Removal != nil {
			all = append(all, shown{&c.Removal.Event, c.Removal.Burst})
		}
		var culprit *expectBurst
		for j, x := range all {
			if x.e.Responsible != networkdName(nd) {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, x.e.Time)
			if err != nil {
				failf("change %d time %q: %v", i, x.e.Time, err)
				return
			}
			b, err := networkdBurst(evs, nd, t)
			if err != nil {
				failf("change %d: %v", i, err)
				return
			}
			if want := b.json(); x.b != want {
				failf("change %d's burst %+v; trace's events by networkd give %+v (change: %s)", i, x.b, want, excerpt(rep.Changes[i], 400))
			}
			// The removal a change reports: its last change when that
			// removed it, else the removal the last change undid.
			if (c.State == "deleted" && j == 0) || (c.State == "back" && j == 1) {
				culprit = &b
			}
		}
		if c.State == "back" && c.Removal == nil {
			failf("change %d is back without the removal it undid: %s", i, excerpt(rep.Changes[i], 400))
		}
		if culprit != nil {
			networkdShown = true
			routes = routes || culprit.routes.removals() > culprit.routesByKernel
			rules = rules || culprit.rules.removals() > culprit.rulesByKernel
		}
	}
	if !networkdShown {
		return // not reached: the route above is networkd's
	}
	if len(rep.Advice) != 1 || rep.Advice[0].Actor != "systemd-networkd" {
		failf("advice %+v, want systemd-networkd's alone", rep.Advice)
		return
	}
	steps := rep.Advice[0].Steps
	if got := slices.Contains(steps, "  ManageForeignRoutes=no"); got != routes {
		failf("advice has ManageForeignRoutes=no %t, want %t (networkd deleted routes itself: %t): %q", got, routes, routes, steps)
	}
	if got := slices.Contains(steps, "  ManageForeignRoutingPolicyRules=no"); got != rules {
		failf("advice has ManageForeignRoutingPolicyRules=no %t, want %t (networkd deleted rules: %t): %q", got, rules, rules, steps)
	}
	if (routes || rules) && !slices.Contains(steps, "  [Network]") {
		failf("advice sets networkd.conf options without their [Network] section: %q", steps)
	}
}

func removalEvent(c *whyChange) *whyEvent {
	if c.Removal == nil {
		return nil
	}
	return &c.Removal.Event
}

// networkdChanges counts the changes trace reported that count toward
// networkd, as networkdBurst counts them.
func networkdChanges(evs []*rtEvent, nd networkd) int {
	n := 0
	for _, ev := range evs {
		if ev.Errno != 0 || (ev.Object != "route" && ev.Object != "rule") {
			continue
		}
		a := ev.Actor
		if ev.Origin == "kernel" && ev.Cause != nil {
			a = ev.Cause.Actor
		}
		if !a.Kernel && a.Pid == nd.pid && a.Comm == networkdComm {
			n++
		}
	}
	return n
}

// containsWord: s holds sub followed by the end or a space, so that
// address 10.0.0.1/2 does not pass for 10.0.0.1/24.
func containsWord(s, sub string) bool {
	for i := strings.Index(s, sub); i >= 0; {
		end := i + len(sub)
		if end == len(s) || s[end] == ' ' {
			return true
		}
		j := strings.Index(s[i+1:], sub)
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}
