package main

import (
	"bytes"
	"encoding/json"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/exporter"
	"github.com/routetrace/routetrace/forensics"
)

// The checks of why's answer are run here against the real thing: events
// shaped like the VM's, printed by trace's JSON sink and answered by
// package forensics as `routetrace why --output json` answers. A check that
// fails a correct answer would fail every VM run; one that passes a wrong
// answer is shown by the mutations.

var t0 = time.Date(2026, 11, 27, 3, 4, 5, 100_000_000, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func kname(s string) event.Name {
	var n event.Name
	n.Set(s)
	return n
}

func ndActor() event.Actor {
	return event.Actor{
		Pid: nd.pid, Tgid: nd.pid, PPid: 1, UID: 998, CgroupID: nd.cgroup, Netns: testNetns,
		Comm: kname(networkdComm), PComm: kname("systemd"), Cookie: 7,
		Process: &event.Process{Exe: nd.exe, Cmdline: nd.cmdline, Cgroup: networkdCgroupPath, CgroupHierarchy: "cgroup2", Unit: networkdUnit},
	}
}

func evRoute(at time.Time, op event.Op, a event.Actor, dst string, table uint32, typ uint8, oif uint32) *event.Event {
	ev := &event.Event{Time: at, Op: op, Object: event.ObjectRoute, Origin: event.OriginNetlink, Attach: event.AttachFentry,
		Dst: netip.MustParsePrefix(dst), Table: table, Protocol: 12, Type: typ, Oif: oif, Netns: testNetns, Actor: a, Portid: 1, Seq: 1}
	ev.Family = event.FamilyInet
	if ev.Dst.Addr().Is6() {
		ev.Family, ev.Priority = event.FamilyInet6, 1024
	}
	if oif == 3 {
		ev.Dev = kname("nd0")
	}
	return ev
}

func evRule(at time.Time, a event.Actor, src string, pref, table uint32) *event.Event {
	return &event.Event{Time: at, Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet, Origin: event.OriginNetlink,
		Attach: event.AttachFentry, Src: netip.MustParsePrefix(src), Priority: pref, Table: table, Action: event.RuleActionToTable,
		Netns: testNetns, Actor: a, Portid: 1, Seq: 1}
}

// restartEvents is one networkd restart as trace reports it: rules and
// routes it deletes, routes the kernel removes when it deletes
// 198.18.0.1/24, a failed delete, and 1.5 s later its own route back (a
// burst of its own).
func restartEvents() []*event.Event {
	a := ndActor()
	kern := evRoute(t0.Add(ms(250)), event.OpDelete, event.Actor{Kernel: true}, "10.244.1.0/24", 254, event.RouteTypeUnicast, 3)
	kern.Origin, kern.Path, kern.Portid, kern.Seq = event.OriginKernel, event.PathFibInetaddrEvent, 0, 0
	kern.Cause = event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete, Ifindex: 3, Prefix: netip.MustParsePrefix("198.18.0.1/24"), Actor: a}
	failed := evRoute(t0.Add(ms(260)), event.OpDelete, a, "10.244.9.0/24", 254, event.RouteTypeUnicast, 3)
	failed.Errno = 3
	return []*event.Event{
		evRule(t0, a, "10.244.0.5/32", 1536, 101),
		evRoute(t0.Add(ms(100)), event.OpDelete, a, "10.244.2.0/24", 100, event.RouteTypeUnicast, 3),
		evRoute(t0.Add(ms(130)), event.OpDelete, a, "10.244.0.0/26", 254, event.RouteTypeBlackhole, 0),
		evRoute(t0.Add(ms(140)), event.OpDelete, a, "fd00:244::/64", 254, event.RouteTypeBlackhole, 0),
		kern, failed,
		evRoute(t0.Add(ms(1800)), event.OpAdd, a, "198.51.100.0/24", 254, event.RouteTypeUnicast, 3),
	}
}

// traceLines is what trace prints for evs (without its summary).
func traceLines(t *testing.T, evs []*event.Event) []*rtEvent {
	t.Helper()
	var buf bytes.Buffer
	sink := exporter.NewJSONWithOptions(&buf, exporter.JSONOptions{})
	for _, ev := range evs {
		if err := sink.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	sink.Close()
	return events(t, strings.Split(strings.TrimSpace(buf.String()), "\n")...)
}

// whyJSON is why's JSON answer for arg over evs.
func whyJSON(t *testing.T, evs []*event.Event, arg string) []byte {
	t.Helper()
	target, err := forensics.ParseTarget(arg)
	if err != nil {
		t.Fatal(err)
	}
	var seq iter.Seq[*event.Event] = slices.Values(evs)
	var buf bytes.Buffer
	if err := forensics.Why(seq, target, forensics.Options{}, t0.Add(time.Hour)).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func findLine(t *testing.T, lines []*rtEvent, dst string) *rtEvent {
	t.Helper()
	for _, l := range lines {
		if l.Dst == dst && l.Op == "delete" && l.Errno == 0 {
			return l
		}
	}
	t.Fatalf("no delete of %s", dst)
	return nil
}

func TestCheckWhy(t *testing.T) {
	evs := restartEvents()
	lines := traceLines(t, evs)
	for _, tc := range []struct {
		name, dst, arg string
		mutate         func(string) string // of why's output
		ndMutate       func(*networkd)
		fail           string
	}{
		{name: "by request", dst: "10.244.0.0/26", arg: "10.244.0.0/26"},
		{name: "by the kernel", dst: "10.244.1.0/24", arg: "10.244.1.0/24"},
		{name: "ipv6 blackhole", dst: "fd00:244::/64", arg: "fd00:244::/64"},
		{name: "other pid", dst: "10.244.0.0/26", arg: "10.244.0.0/26", ndMutate: func(n *networkd) { n.pid++ }, fail: "responsible"},
		{name: "other command line", dst: "10.244.0.0/26", arg: "10.244.0.0/26",
			ndMutate: func(n *networkd) { n.cmdline = []string{"/lib/systemd/systemd-networkd", "-v"} }, fail: "actor is not networkd"},
		{name: "cause actor", dst: "10.244.1.0/24", arg: "10.244.1.0/24",
			ndMutate: func(n *networkd) { n.cgroup++ }, fail: "cause actor is not networkd"},
		{name: "burst count", dst: "10.244.0.0/26", arg: "10.244.0.0/26",
			mutate: func(s string) string {
				return strings.Replace(s, `"rules":{"add":0,"replace":0,"delete":1`, `"rules":{"add":0,"replace":0,"delete":2`, 1)
			},
			fail: "burst"},
		{name: "kernel count", dst: "10.244.0.0/26", arg: "10.244.0.0/26",
			mutate: func(s string) string { return strings.Replace(s, `"routes_by_kernel":1`, `"routes_by_kernel":0`, 1) },
			fail:   "burst"},
		{name: "no rules advice", dst: "10.244.0.0/26", arg: "10.244.0.0/26",
			mutate: func(s string) string { return strings.Replace(s, `"  ManageForeignRoutingPolicyRules=no",`, ``, 1) },
			fail:   "ManageForeignRoutingPolicyRules=no false, want true"},
		{name: "state", dst: "10.244.0.0/26", arg: "10.244.0.0/26",
			mutate: func(s string) string { return strings.Replace(s, `"state":"deleted"`, `"state":"back"`, 1) },
			fail:   "state"},
		{name: "scanned", dst: "10.244.0.0/26", arg: "10.244.0.0/26",
			mutate: func(s string) string { return strings.Replace(s, `"events_scanned":7`, `"events_scanned":6`, 1) },
			fail:   "6 events scanned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := whyJSON(t, evs, tc.arg)
			if tc.mutate != nil {
				m := tc.mutate(string(out))
				if m == string(out) {
					t.Fatalf("mutation changed nothing in %s", out)
				}
				out = []byte(m)
			}
			n := nd
			if tc.ndMutate != nil {
				tc.ndMutate(&n)
			}
			v := &verdict{}
			checkWhy(v, out, tc.arg, findLine(t, lines, tc.dst), lines, n, testNetns)
			switch {
			case tc.fail == "" && len(v.failures) > 0:
				t.Errorf("failures %q, want none; why said %s", v.failures, out)
			case tc.fail != "" && (len(v.failures) == 0 || !strings.Contains(v.failures[0], tc.fail)):
				t.Errorf("failures %q, want one containing %q", v.failures, tc.fail)
			}
			if tc.fail == "" && len(v.notes) != 1 {
				// The re-add 1.5 s later is a burst of its own.
				t.Errorf("notes %q, want the one about two bursts", v.notes)
			}
		})
	}
}

func TestNetworkdBurst(t *testing.T) {
	lines := traceLines(t, restartEvents())
	b, err := networkdBurst(lines, nd, t0.Add(ms(130)))
	if err != nil {
		t.Fatal(err)
	}
	want := expectBurst{start: t0, end: t0.Add(ms(250)), events: 5,
		routes: whyOps{Delete: 4}, rules: whyOps{Delete: 1}, routesByKernel: 1}
	if b != want {
		t.Errorf("burst %+v, want %+v", b, want)
	}
	if b, err = networkdBurst(lines, nd, t0.Add(ms(1800))); err != nil || b.events != 1 || b.routes.Add != 1 {
		t.Errorf("the re-add's burst: %+v, %v", b, err)
	}
	if _, err = networkdBurst(lines, nd, t0.Add(ms(1000))); err == nil {
		t.Error("a time between bursts found one")
	}
}

func TestWhyTarget(t *testing.T) {
	before := snap(t, []string{"3 inet 198.18.0.1/24"},
		map[string][]string{"inet": {routeBlackhole, routeFlushed, routeCali,
			`{"type":"2","dst":"198.18.0.1","dev":"nd0","table":"255","protocol":"2","scope":"254","prefsrc":"198.18.0.1","flags":[]}`}},
		map[string][]string{"inet": {rulePod}})
	after := snap(t, nil, map[string][]string{"inet": {routeCali}}, nil)
	local := strings.NewReplacer(`"dst":"10.244.1.0/24","gateway":"198.18.0.254"`, `"dst":"198.18.0.1/32"`, `"table":254`, `"table":255`,
		`"protocol":"bird","protocol_num":12`, `"protocol":"kernel","protocol_num":2`, `"type":"unicast"`, `"type":"local"`).Replace(flushed)
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		// The /32 the kernel made for the address is more specific, but a
		// route someone put there comes first; of those the /26.
		{"pod route first", []string{delRule, flushed, local, delBlackhole}, "10.244.0.0/26"},
		{"kernel-made last", []string{local}, "198.18.0.1/32"},
		{"by the kernel for networkd", []string{flushed, local}, "10.244.1.0/24"},
		{"not networkd's", []string{strings.Replace(delBlackhole, `"pid":365`, `"pid":1`, 1)}, ""},
		{"rules only", []string{delRule}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := whyTarget(events(t, tc.lines...), before, after, nd, testNetns)
			switch {
			case tc.want == "" && got != nil:
				t.Errorf("target %s, want none", got.Dst)
			case tc.want != "" && (got == nil || got.Dst != tc.want):
				t.Errorf("target %v, want %s", got, tc.want)
			}
		})
	}
	for dst, want := range map[string]string{"10.244.0.5/32": "10.244.0.5", "10.244.0.0/26": "10.244.0.0/26", "fd00:244::5/128": "fd00:244::5"} {
		fam := "inet"
		if strings.Contains(dst, ":") {
			fam = "inet6"
		}
		if got, err := whyArg(&rtEvent{Dst: dst, Family: fam}); err != nil || got != want {
			t.Errorf("whyArg(%s) = %q, %v; want %q", dst, got, err, want)
		}
	}
}

func TestHistoryCompare(t *testing.T) {
	out := []byte("{\"op\":\"add\"}\n{\"op\":\"delete\"}\n{\"summary\":{\"changes\":2}}\n")
	got, ok := withoutSummary(out)
	if !ok || string(got) != "{\"op\":\"add\"}\n{\"op\":\"delete\"}\n" {
		t.Errorf("withoutSummary = %q, %t", got, ok)
	}
	if _, ok := withoutSummary([]byte("{\"op\":\"add\"}\n")); ok {
		t.Error("output without a summary line accepted")
	}
	if got, ok := withoutSummary([]byte("{\"summary\":{}}\n")); !ok || len(got) != 0 {
		t.Errorf("summary alone: %q, %t", got, ok)
	}
	d := firstDifference([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"))
	if !strings.Contains(d, `line 2: trace "b", history "B"`) {
		t.Errorf("firstDifference: %s", d)
	}
	var rep whyReport
	if err := json.Unmarshal([]byte(`{"changes":[]}`), &rep); err != nil || len(rep.Changes) != 0 {
		t.Errorf("empty why report: %v", err)
	}
}
