package policy

import (
	"net/netip"
	"testing"

	"github.com/routetrace/routetrace/event"
)

const judgePolicy = `mode: audit
protect:
  - prefix: 10.244.0.0/16
  - prefix: fd00:10:244::/48
  - interface: "cali*"
  - table: 100
  - table: main
  - protocol: bird
  - rule: {priority: "512-1024", table: 100, family: inet}
  - rule: {priority: 2000}
  - nexthop: {id: "10-20"}
  - nexthop: {group: true}
allow:
  - unit: calico-node.service
  - pod: "kube-system/calico-node-*"
  - container: "0123456789ab"
  - container: "cilium-agent"
  - cgroup: "/kubepods.slice/special/*"
  - exe: /usr/sbin/bird
  - comm: "bird*"
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// route is a successful route change by an actor nobody allowed.
func route(op event.Op, dst string, mods ...func(*event.Event)) *event.Event {
	ev := &event.Event{Op: op, Object: event.ObjectRoute, Family: event.FamilyInet, Origin: event.OriginNetlink, Table: 254}
	if dst != "" {
		ev.Dst = netip.MustParsePrefix(dst)
		if ev.Dst.Addr().Is6() {
			ev.Family = event.FamilyInet6
		}
	}
	ev.Table = 254
	ev.Actor.Tgid, ev.Actor.Pid = 42, 42
	ev.Actor.Comm.Set("ip")
	for _, m := range mods {
		m(ev)
	}
	return ev
}

func inTable(t uint32) func(*event.Event) { return func(ev *event.Event) { ev.Table = t } }
func dev(name string) func(*event.Event)  { return func(ev *event.Event) { ev.Dev.Set(name) } }
func proto(p uint8) func(*event.Event)    { return func(ev *event.Event) { ev.Protocol = p } }
func comm(c string) func(*event.Event)    { return func(ev *event.Event) { ev.Actor.Comm.Set(c) } }
func process(p *event.Process) func(*event.Event) {
	return func(ev *event.Event) { ev.Actor.Process = p }
}

func TestJudge(t *testing.T) {
	p := mustParse(t, judgePolicy)
	calicoPod := &event.Pod{Namespace: "kube-system", Name: "calico-node-x7k2p"}
	otherPod := &event.Pod{Namespace: "default", Name: "calico-node-x7k2p"}
	const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

	type want struct {
		rule             int // index of the protect entry; -1: none
		counted, allowed bool
	}
	for _, tc := range []struct {
		name string
		ev   *event.Event
		want want
	}{
		// Selectors.
		{"outside everything", route(event.OpDelete, "192.168.0.0/24", inTable(50)), want{-1, false, false}},
		{"prefix itself", route(event.OpDelete, "10.244.0.0/16", inTable(50)), want{0, true, false}},
		{"inside prefix", route(event.OpDelete, "10.244.7.1/32", inTable(50)), want{0, true, false}},
		{"wider than prefix", route(event.OpDelete, "10.0.0.0/8", inTable(50)), want{-1, false, false}},
		{"ipv6 inside prefix", route(event.OpDelete, "fd00:10:244:1::/64", inTable(50)), want{1, true, false}},
		{"ipv4-in-ipv6 is not ipv4", route(event.OpDelete, "::ffff:10.244.0.1/128", inTable(50)), want{-1, false, false}},
		{"interface glob", route(event.OpDelete, "192.168.0.0/24", inTable(50), dev("cali1234abcd")), want{2, true, false}},
		{"interface from the victim link", route(event.OpDelete, "192.168.0.0/24", inTable(50),
			func(ev *event.Event) { ev.Victim.Link = &event.Link{Name: "cali9"} }), want{2, true, false}},
		{"interface other", route(event.OpDelete, "192.168.0.0/24", inTable(50), dev("eth0")), want{-1, false, false}},
		{"table", route(event.OpDelete, "192.168.0.0/24", inTable(100)), want{3, true, false}},
		{"table 0 is main", route(event.OpDelete, "192.168.0.0/24", inTable(0)), want{4, true, false}},
		{"protocol", route(event.OpDelete, "192.168.0.0/24", inTable(50), proto(12)), want{5, true, false}},
		{"rule in range", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet, Priority: 600, Table: 100}, want{6, true, false}},
		{"rule table unnamed", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet, Priority: 512}, want{6, true, false}},
		{"rule other table", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet, Priority: 600, Table: 101}, want{-1, false, false}},
		{"rule other family", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet6, Priority: 600, Table: 100}, want{-1, false, false}},
		{"rule out of range", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet, Priority: 1025, Table: 100}, want{-1, false, false}},
		{"rule priority only", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet6, Priority: 2000, Table: 7}, want{7, true, false}},
		{"nexthop id", &event.Event{Op: event.OpDelete, Object: event.ObjectNexthop, NexthopID: 15}, want{8, true, false}},
		{"nexthop other id", &event.Event{Op: event.OpDelete, Object: event.ObjectNexthop, NexthopID: 21}, want{-1, false, false}},
		{"nexthop group", &event.Event{Op: event.OpDelete, Object: event.ObjectNexthop, NexthopID: 99, Multipath: true}, want{9, true, false}},
		{"route selectors ignore rules", &event.Event{Op: event.OpDelete, Object: event.ObjectRule, Dst: netip.MustParsePrefix("10.244.0.0/24"), Table: 254, Priority: 3}, want{-1, false, false}},

		// Operations.
		{"replace counts", route(event.OpReplace, "10.244.1.0/24"), want{0, true, false}},
		{"add inside prefix does not count", route(event.OpAdd, "10.244.1.0/24", inTable(50)), want{0, false, false}},
		{"add to a table does not count", route(event.OpAdd, "192.168.0.0/24", inTable(100)), want{3, false, false}},
		{"flush of a table", &event.Event{Op: event.OpFlush, Object: event.ObjectRoute, Table: 100, Count: 3}, want{3, true, false}},
		{"flush of another table", &event.Event{Op: event.OpFlush, Object: event.ObjectRoute, Table: 50, Count: 3}, want{-1, false, false}},
		{"unknown op", route(event.OpUnknown, "10.244.1.0/24"), want{0, false, false}},
		{"failed delete", route(event.OpDelete, "10.244.1.0/24", func(ev *event.Event) { ev.Errno = 3 }), want{0, false, false}},
		{"rule add does not count", &event.Event{Op: event.OpAdd, Object: event.ObjectRule, Family: event.FamilyInet, Priority: 600, Table: 100}, want{6, false, false}},

		// Allow entries.
		{"comm glob", route(event.OpDelete, "10.244.1.0/24", comm("bird6")), want{0, true, true}},
		{"comm unenriched other", route(event.OpDelete, "10.244.1.0/24", comm("birb")), want{0, true, false}},
		{"unit", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{Unit: "calico-node.service"})), want{0, true, true}},
		{"other unit", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{Unit: "kubelet.service"})), want{0, true, false}},
		{"pod", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{ContainerID: cid,
			Container: &event.Container{ID: cid, Name: "calico-node", Pod: calicoPod}})), want{0, true, true}},
		{"pod in another namespace", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{ContainerID: "ee" + cid[2:],
			Container: &event.Container{ID: cid, Name: "x", Pod: otherPod}})), want{0, true, false}},
		{"victim pod is not the actor", route(event.OpDelete, "10.244.1.0/24",
			func(ev *event.Event) { ev.Victim.Pod = calicoPod }), want{0, true, false}},
		{"container id prefix", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{ContainerID: cid})), want{0, true, true}},
		{"container name", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{ContainerID: "ff" + cid[2:],
			Container: &event.Container{Name: "cilium-agent"}})), want{0, true, true}},
		{"cgroup", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{Cgroup: "/kubepods.slice/special/x"})), want{0, true, true}},
		{"cgroup deeper than the glob", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{Cgroup: "/kubepods.slice/special/x/y"})), want{0, true, false}},
		{"exe", route(event.OpDelete, "10.244.1.0/24", process(&event.Process{Exe: "/usr/sbin/bird"})), want{0, true, true}},
		{"unknown actor", route(event.OpDelete, "10.244.1.0/24", func(ev *event.Event) { ev.Actor = event.Actor{} }), want{0, true, false}},

		// Kernel-internal changes.
		{"kernel removal caused by an allowed actor", route(event.OpDelete, "10.244.1.0/24", func(ev *event.Event) {
			ev.Origin, ev.Actor = event.OriginKernel, event.Actor{Kernel: true}
			ev.Cause = event.Cause{Valid: true, Object: event.ObjectLink, Op: event.OpDelete}
			ev.Cause.Actor.Tgid = 7
			ev.Cause.Actor.Comm.Set("bird")
		}), want{0, true, true}},
		{"kernel removal caused by another", route(event.OpDelete, "10.244.1.0/24", func(ev *event.Event) {
			ev.Origin = event.OriginKernel
			ev.Cause = event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete}
			ev.Cause.Actor.Tgid = 7
			ev.Cause.Actor.Comm.Set("ip")
		}), want{0, true, false}},
		{"kernel removal without a cause", route(event.OpDelete, "10.244.1.0/24", comm("bird"), func(ev *event.Event) {
			ev.Origin = event.OriginKernel
		}), want{0, true, false}},
		{"kernel actor", route(event.OpDelete, "10.244.1.0/24", func(ev *event.Event) {
			ev.Actor = event.Actor{Kernel: true}
			ev.Actor.Comm.Set("bird")
		}), want{0, true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := p.Judge(tc.ev)
			var wantRule *Protect
			if tc.want.rule >= 0 {
				wantRule = &p.Protect[tc.want.rule]
			}
			if j.Rule != wantRule || j.Counted != tc.want.counted || j.Allowed != tc.want.allowed {
				t.Errorf("got rule %v counted %v allowed %v, want rule %v counted %v allowed %v",
					j.Rule, j.Counted, j.Allowed, wantRule, tc.want.counted, tc.want.allowed)
			}
			if got := p.Protects(tc.ev); got != wantRule {
				t.Errorf("Protects = %v, want %v", got, wantRule)
			}
		})
	}
}

func TestJudgeMoreSpecific(t *testing.T) {
	p := mustParse(t, "protect:\n  - table: 50\n  - prefix: 10.244.0.0/16\noperations: {replace: false, more-specific: true}\n")
	add := route(event.OpAdd, "10.244.3.0/24", inTable(50))
	if j := p.Judge(add); j.Rule != &p.Protect[1] || !j.Counted {
		t.Errorf("add inside the prefix with more-specific: %+v, want protect[1] counted", j)
	}
	if j := p.Judge(route(event.OpAdd, "192.168.0.0/24", inTable(50))); j.Rule != &p.Protect[0] || j.Counted {
		t.Errorf("add to a table: %+v, want protect[0] not counted", j)
	}
	if j := p.Judge(route(event.OpReplace, "10.244.3.0/24")); j.Rule != &p.Protect[1] || j.Counted {
		t.Errorf("replace with replace: false: %+v, want not counted", j)
	}
}

func TestApply(t *testing.T) {
	p := mustParse(t, judgePolicy)
	ev := route(event.OpDelete, "10.244.1.0/24")
	p.Apply(ev, event.VerdictWouldBlock)
	want := event.Enforcement{Verdict: event.VerdictWouldBlock, Rule: "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)"}
	if ev.Enforcement != want {
		t.Errorf("enforcement %+v, want %+v", ev.Enforcement, want)
	}

	allowed := route(event.OpDelete, "10.244.1.0/24", comm("bird"))
	p.Apply(allowed, event.VerdictWouldBlock)
	if allowed.Enforcement != (event.Enforcement{}) {
		t.Errorf("allowed change: enforcement %+v, want none", allowed.Enforcement)
	}

	blocked := route(event.OpDelete, "10.244.1.0/24", func(ev *event.Event) {
		ev.Errno = 1
		ev.Enforcement = event.Enforcement{Verdict: event.VerdictBlocked, Rule: "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)"}
	})
	before := blocked.Enforcement
	p.Apply(blocked, event.VerdictRepaired)
	if blocked.Enforcement != before {
		t.Errorf("the kernel's verdict was changed: %+v", blocked.Enforcement)
	}
}

func TestAllowed(t *testing.T) {
	p := mustParse(t, judgePolicy)
	var a event.Actor
	a.Tgid = 1
	a.Comm.Set("bird")
	if !p.AllowedActor(&a) {
		t.Error("bird not allowed")
	}
	if p.AllowedActor(nil) {
		t.Error("nil actor allowed")
	}
	a.Tgid = 0 // a request the tracer did not capture
	if p.AllowedActor(&a) {
		t.Error("unknown actor allowed")
	}

	// Allowed judges the actor answerable for the event.
	if !p.Allowed(route(event.OpDelete, "10.244.1.0/24", comm("bird"))) {
		t.Error("a change by bird not allowed")
	}
	kernel := route(event.OpDelete, "10.244.1.0/24", comm("bird"), func(ev *event.Event) { ev.Origin = event.OriginKernel })
	if p.Allowed(kernel) {
		t.Error("a kernel-internal change without a cause allowed by the event's comm")
	}
	kernel.Cause.Valid, kernel.Cause.Actor = true, kernel.Actor
	if !p.Allowed(kernel) {
		t.Error("a kernel-internal change caused by bird not allowed")
	}
}

// The parts the BPF enforcer's facts are made of (nodefacts).
func TestEnforcerFacts(t *testing.T) {
	p := mustParse(t, judgePolicy)
	for name, want := range map[string]int{"cali1234abcd": 2, "eth0": -1, "": -1} {
		if got := p.ProtectedInterface(name); got != want {
			t.Errorf("ProtectedInterface(%q) = %d, want %d", name, got, want)
		}
	}
	if !p.AllowsByCgroup() {
		t.Error("AllowsByCgroup false with unit, pod, container and cgroup entries")
	}
	for _, tc := range []struct {
		proc *event.Process
		want bool
	}{
		{&event.Process{Cgroup: "/system.slice/calico-node.service", Unit: "calico-node.service"}, true},
		{&event.Process{Cgroup: "/kubepods.slice/special/x"}, true},
		{&event.Process{Cgroup: "/system.slice/bird.service", Unit: "bird.service", Exe: "/usr/sbin/bird"}, false}, // exe is not by cgroup
		{nil, false},
	} {
		if got := p.AllowsProcess(tc.proc); got != tc.want {
			t.Errorf("AllowsProcess(%+v) = %v, want %v", tc.proc, got, tc.want)
		}
	}
	if got := p.AllowedExes(); len(got) != 1 || got[0] != "/usr/sbin/bird" {
		t.Errorf("AllowedExes() = %q", got)
	}
	commOnly := mustParse(t, "protect: [{table: 1}]\nallow: [{comm: bird}, {exe: /usr/sbin/bird}]\n")
	if commOnly.AllowsByCgroup() {
		t.Error("AllowsByCgroup true with only comm and exe entries")
	}
	if got := []int{p.Allow[0].Index, p.Allow[6].Index, p.Protect[9].Index}; got[0] != 0 || got[1] != 6 || got[2] != 9 {
		t.Errorf("indexes %v", got)
	}
}

func TestJudgeAllocations(t *testing.T) {
	p := mustParse(t, judgePolicy)
	unprotected := route(event.OpDelete, "192.168.0.0/24", inTable(50), dev("eth0"))
	protected := route(event.OpDelete, "10.244.1.0/24", process(&event.Process{Unit: "kubelet.service", Cgroup: "/system.slice/kubelet.service"}))
	for name, ev := range map[string]*event.Event{"unprotected": unprotected, "protected": protected} {
		if n := testing.AllocsPerRun(100, func() { p.Apply(ev, event.VerdictWouldBlock) }); n != 0 {
			t.Errorf("%s: %v allocations per Apply", name, n)
		}
	}
}

func BenchmarkJudgeUnprotected(b *testing.B) {
	p := mustParse(b, judgePolicy)
	ev := route(event.OpDelete, "192.168.0.0/24", inTable(50), dev("eth0"))
	b.ReportAllocs()
	for b.Loop() {
		p.Judge(ev)
	}
}

// BenchmarkJudgeProtected goes through every allow entry: the actor, an
// enriched process, matches none.
func BenchmarkJudgeProtected(b *testing.B) {
	p := mustParse(b, judgePolicy)
	ev := route(event.OpDelete, "10.244.1.0/24", dev("cali1234abcd"), process(&event.Process{
		Unit: "kubelet.service", Cgroup: "/system.slice/kubelet.service", Exe: "/usr/bin/kubelet",
	}))
	b.ReportAllocs()
	for b.Loop() {
		p.Judge(ev)
	}
}
