package forensics

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
)

func why(t *testing.T, target string, evs []*event.Event) *Report {
	t.Helper()
	p, err := ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	r := Why(slices.Values(evs), p, Options{}, now)
	r.Location = time.UTC
	return r
}

func text(t *testing.T, r *Report) []string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// wantLines compares the text report line by line, so that a failure
// names the line that differs.
func wantLines(t *testing.T, got, want []string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("line %d:\n got: %q\nwant: %q", i+1, g, w)
		}
	}
	if t.Failed() {
		t.Logf("whole report:\n%s", strings.Join(got, "\n"))
	}
}

const (
	ndName      = "systemd-networkd.service (systemd-network[412], /usr/lib/systemd/systemd-networkd)"
	ndBurst     = " — one of 15 removals by it in 0.3 s (9 routes (3 by the kernel), 6 rules)"
	ndActor     = "  actor: systemd-network[412] uid 101, parent systemd[1], unit systemd-networkd.service, cgroup /system.slice/systemd-networkd.service"
	ndCommand   = "  command: /lib/systemd/systemd-networkd"
	whenRestart = "2026-11-27 03:04:05 (6h ago)"
)

var networkdFixBoth = []string{
	"Fix (systemd-networkd): systemd-networkd removes the routes and routing policy rules it did not configure: ManageForeignRoutes= (systemd 246+) and ManageForeignRoutingPolicyRules= (systemd 249+) default to yes.",
	"  Put in /etc/systemd/networkd.conf, or a drop-in such as /etc/systemd/networkd.conf.d/90-keep-foreign.conf:",
	"    [Network]",
	"    ManageForeignRoutes=no",
	"    ManageForeignRoutingPolicyRules=no",
	"  networkd reads it when it starts: it applies from networkd's next start.",
}

// A pod address behind a node route networkd removed: the rule that
// selects it, the /24 in two tables, and the iif rules (no address
// selector: they apply to it too), most specific first.
func TestWhyNetworkdRestart(t *testing.T) {
	r := why(t, "10.244.2.7", incident())
	want := slices.Concat([]string{
		"10.244.2.7: 5 routes and rules that cover it changed: 5 last DELETED. Removed by systemd-networkd.service (systemd-network[412]).",
		"",
		"rule pref 1536 from 10.244.2.7 lookup 100 was DELETED " + whenRestart + " by " + ndName + ndBurst,
		ndActor,
		ndCommand,
		"10.244.2.0/24 dev nd0 table 100 proto static was DELETED " + whenRestart + " by " + ndName + " — in the same burst",
		"10.244.2.0/24 dev nd0 table main proto static was DELETED " + whenRestart + " by " + ndName + " — in the same burst",
		"rule pref 1601 from all iif cali1a2b3c lookup 101 was DELETED " + whenRestart + " by " + ndName + " — in the same burst",
		"rule pref 1600 from all iif nd0 lookup 100 was DELETED " + whenRestart + " by " + ndName + " — in the same burst",
		"",
	}, networkdFixBoth, []string{
		"  Or, for routes on nd0, a link networkd manages: declare them in its .network ([Route] sections) so they are networkd's own, or set KeepConfiguration=static in its [Network] section (networkd then keeps foreign routes with proto static).",
		"",
		"Journal: 29 events scanned, 2026-11-27 01:04:05 to 2026-11-27 03:04:05.",
	})
	wantLines(t, text(t, r), want)

	if len(r.Changes) != 5 {
		t.Fatalf("%d changes, want 5", len(r.Changes))
	}
	wantMatch := []Match{MatchRuleFrom, MatchCovers, MatchCovers, MatchRuleAll, MatchRuleAll}
	for i, c := range r.Changes {
		if c.Match != wantMatch[i] {
			t.Errorf("change %d (%s): match %s, want %s", i, describe(&c.Event), c.Match, wantMatch[i])
		}
		if c.Seen != 2 {
			t.Errorf("change %d: seen %d, want 2 (the add and the delete)", i, c.Seen)
		}
	}
	b := r.Changes[0].Burst
	wantBurst := Burst{Start: t0, End: t0.Add(ms(300)),
		Routes: OpCounts{Delete: 9}, Rules: OpCounts{Delete: 6}, RoutesByKernel: 3,
		Addresses: []CauseAddress{{netip.MustParsePrefix("198.18.0.1/24"), ndIfindex}, {netip.MustParsePrefix("2001:db8:ff::1/64"), ndIfindex}}}
	if !b.Start.Equal(wantBurst.Start) || !b.End.Equal(wantBurst.End) || b.Routes != wantBurst.Routes || b.Rules != wantBurst.Rules ||
		b.RoutesByKernel != wantBurst.RoutesByKernel || !slices.Equal(b.Addresses, wantBurst.Addresses) {
		t.Errorf("burst %+v, want %+v", b, wantBurst)
	}
}

// The kernel removed the routes of an address networkd deleted: the cause
// chain names networkd's request, and the fix names the address.
func TestWhyKernelRemovalCause(t *testing.T) {
	r := why(t, "2001:db8:ff::1", incident())
	cause := "  cause: the kernel removed it (addrconf_notify) because " + ndName + " deleted address 2001:db8:ff::1/64 from nd0 (ifindex 3)"
	want := slices.Concat([]string{
		"2001:db8:ff::1: 2 routes and rules that cover it changed: 2 last DELETED. Removed by systemd-networkd.service (systemd-network[412]).",
		"",
		"local 2001:db8:ff::1/128 dev nd0 table local proto kernel was DELETED " + whenRestart + " by the kernel, for " + ndName + ndBurst,
		cause,
		ndActor,
		ndCommand,
		"2001:db8:ff::/64 dev nd0 table main proto kernel was DELETED " + whenRestart + " by the kernel, for " + ndName + " — in the same burst",
		cause,
		"",
	}, networkdFixBoth, []string{
		"  It deleted address 2001:db8:ff::1/64 from nd0 and the kernel removed the routes that used it: if the address is meant to stay, declare it in nd0's .network (Address=2001:db8:ff::1/64).",
		"",
		"Journal: 29 events scanned, 2026-11-27 01:04:05 to 2026-11-27 03:04:05.",
	})
	wantLines(t, text(t, r), want)
	if got := []Match{r.Changes[0].Match, r.Changes[1].Match}; !slices.Equal(got, []Match{MatchExact, MatchCovers}) {
		t.Errorf("matches %v, want exact then covers", got)
	}
}

// calico-node put the pod route back two seconds after networkd removed
// it: the last change is the add, and the report says it is back and who
// had removed it.
func TestWhyBack(t *testing.T) {
	nd := networkd()
	evs := slices.Concat(cniSetup(), []*event.Event{
		route(t0.Add(ms(5)), event.OpDelete, nd, routeSpec{dst: "10.244.0.5/32", dev: "cali1a2b3c", oif: caliIfindex, table: 254, proto: 4}),
		route(t0.Add(2*time.Second), event.OpAdd, calicoNode(), routeSpec{dst: "10.244.0.5/32", dev: "cali1a2b3c", oif: caliIfindex, table: 254, proto: 4}),
	})
	r := why(t, "10.244.0.5", evs)
	got := text(t, r)
	want := []string{
		"10.244.0.5: 7 routes and rules that cover it changed: 1 deleted and BACK, 6 added or replaced. Removed by systemd-networkd.service (systemd-network[412]).",
		"",
		"10.244.0.5/32 dev cali1a2b3c table main proto static is BACK: ADDED 2026-11-27 03:04:07 (6h ago) by pod kube-system/calico-node-x7k2p container calico-node (calico-node[812], /usr/bin/calico-node)",
		"  it was DELETED 2026-11-27 03:04:05 (6h ago) by " + ndName + " — its only removal around then",
		"  actor: systemd-network[412] uid 101, parent systemd[1], unit systemd-networkd.service, cgroup /system.slice/systemd-networkd.service",
		ndCommand,
		"rule pref 1536 from 10.244.0.5 lookup 101 was ADDED 2026-11-27 01:04:05 (8h ago) by ip[3007] — its only change around then",
		"  actor: ip[3007] uid 0, parent bash[700]; not enriched (no unit, pod or command line recorded)",
		"rule pref 512 from all to 10.244.0.5 lookup main was ADDED 2026-11-27 01:04:05 (8h ago) by ip[3006] — its only change around then",
		"  actor: ip[3006] uid 0, parent bash[700]; not enriched (no unit, pod or command line recorded)",
		"10.244.0.5/32 dev cali1a2b3c table 101 proto static was ADDED 2026-11-27 01:04:05 (8h ago) by pod kube-system/calico-node-x7k2p container calico-node (calico-node[812], /usr/bin/calico-node) — one of 3 changes by it in 2 ms (3 routes)",
		"  actor: calico-node[812] uid 0, parent runc:[2:INIT][790], pod kube-system/calico-node-x7k2p, container calico-node, container id 0123456789ab (containerd), cgroup /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5c1d.slice/cri-containerd-0123456789abcdef.scope",
		"  command: calico-node -felix",
		"blackhole 10.244.0.0/26 table main proto bird was ADDED 2026-11-27 01:04:05 (8h ago) by pod kube-system/calico-node-x7k2p container calico-node (calico-node[812], /usr/bin/calico-node) — in the same burst",
		"rule pref 1601 from all iif cali1a2b3c lookup 101 was ADDED 2026-11-27 01:04:05 (8h ago) by ip[3010] — its only change around then",
		"  actor: ip[3010] uid 0, parent bash[700]; not enriched (no unit, pod or command line recorded)",
		"rule pref 1600 from all iif nd0 lookup 100 was ADDED 2026-11-27 01:04:05 (8h ago) by ip[3009] — its only change around then",
		"  actor: ip[3009] uid 0, parent bash[700]; not enriched (no unit, pod or command line recorded)",
		"",
		"Fix (systemd-networkd): systemd-networkd removes the routes it did not configure: ManageForeignRoutes= (systemd 246+) defaults to yes.",
		"  Put in /etc/systemd/networkd.conf, or a drop-in such as /etc/systemd/networkd.conf.d/90-keep-foreign.conf:",
		"    [Network]",
		"    ManageForeignRoutes=no",
		"  networkd reads it when it starts: it applies from networkd's next start.",
		"  Keep networkd off the CNI interfaces with a .network such as /etc/systemd/network/10-cni-unmanaged.network:",
		"    [Match]",
		"    Name=cali*",
		"    [Link]",
		"    Unmanaged=yes",
		"",
		"Journal: 16 events scanned, 2026-11-27 01:04:05 to 2026-11-27 03:04:07.",
	}
	wantLines(t, got, want)
	c := r.Changes[0]
	if !c.Back() || c.Removed() || c.Event.Op != event.OpAdd || c.Removal.Event.Op != event.OpDelete || c.Seen != 3 {
		t.Errorf("change 0: back %t removed %t op %s removal %+v seen %d", c.Back(), c.Removed(), c.Event.Op, c.Removal, c.Seen)
	}
}

// The journal is in the order the tracer emitted events, not always time
// order: the latest change by time wins, and a late event that falls
// between two of an actor's bursts joins them.
func TestWhyOutOfOrder(t *testing.T) {
	nd := networkd()
	pod := routeSpec{dst: "10.244.0.5/32", dev: "cali1a2b3c", oif: caliIfindex, table: 254, proto: 4}
	add := route(t0.Add(-time.Hour), event.OpAdd, calicoNode(), pod)
	del := route(t0.Add(ms(100)), event.OpDelete, nd, pod)
	readd := route(t0.Add(5*time.Second), event.OpAdd, calicoNode(), pod)
	other1 := rule(t0, event.OpDelete, nd, ruleSpec{src: "10.244.9.1/32", pref: 1536, table: 100})
	other2 := rule(t0.Add(ms(1500)), event.OpDelete, nd, ruleSpec{src: "10.244.9.2/32", pref: 1536, table: 100})
	other3 := rule(t0.Add(ms(800)), event.OpDelete, nd, ruleSpec{src: "10.244.9.3/32", pref: 1536, table: 100})

	// readd before del, and other3 (0.8 s) after other2 (1.5 s): without
	// it, t0 and t0+1.5 s are two bursts; with it, one.
	r := why(t, "10.244.0.5", []*event.Event{add, other1, readd, other2, del, other3})
	if len(r.Changes) != 1 {
		t.Fatalf("%d changes, want 1", len(r.Changes))
	}
	c := r.Changes[0]
	if c.Event.Op != event.OpAdd || !c.Event.Time.Equal(readd.Time) || !c.Back() || !c.Removal.Event.Time.Equal(del.Time) {
		t.Fatalf("last change %s at %s, removal %+v: want the re-add, back, removed at %s", c.Event.Op, c.Event.Time, c.Removal, del.Time)
	}
	b := c.Removal.Burst
	if b.Rules.Delete != 3 || b.Routes.Delete != 1 || !b.Start.Equal(t0) || !b.End.Equal(t0.Add(ms(1500))) {
		t.Errorf("removal burst %+v: want 1 route and 3 rules from t0 to t0+1.5s", b)
	}
	got := text(t, r)[3]
	want := "  it was DELETED 2026-11-27 03:04:05 (6h ago) by " + ndName + " — one of 4 removals by it in 1.5 s (1 route, 3 rules)"
	if got != want {
		t.Errorf("removal line:\n got: %q\nwant: %q", got, want)
	}

	// An older delete arriving after the add it precedes does not
	// replace the add.
	r = why(t, "10.244.0.5", []*event.Event{readd, del})
	if c := r.Changes[0]; c.Event.Op != event.OpAdd || !c.Back() {
		t.Errorf("late older delete: last %s back %t, want the add, back", c.Event.Op, c.Back())
	}
}

// Nothing in the journal covers an address: say so, with what was read
// and where to look next. IPv4 iif rules do not cover an IPv6 address.
func TestWhyNothingCovers(t *testing.T) {
	r := why(t, "2001:db8:99::1", incident())
	want := []string{
		"2001:db8:99::1: nothing in the journal covers it: no route whose destination holds it, and no rule that selects it, changed.",
		"  Journal: 29 events scanned, 2026-11-27 01:04:05 to 2026-11-27 03:04:05.",
		"  Look wider with: routetrace history --dst 2001:db8:99::/48",
		"  and check that routetrace was running when it broke: the journal starts 2026-11-27 01:04:05 (8h ago).",
	}
	wantLines(t, text(t, r), want)

	r = why(t, "10.1.2.3", nil)
	want = []string{
		"10.1.2.3: nothing in the journal covers it: no route whose destination holds it, and no rule that selects it, changed.",
		"  The journal holds no events: was routetrace running (routetrace trace, or its daemon)?",
		"  Look wider with: routetrace history --dst 10.1.0.0/16",
	}
	wantLines(t, text(t, r), want)
}

// An address outside every pod CIDR is routed by the default route:
// NetworkManager removed it.
func TestWhyDefaultRoute(t *testing.T) {
	nm := event.Actor{Pid: 655, Tgid: 655, PPid: 1, Comm: name("NetworkManager"), PComm: name("systemd"),
		Process: &event.Process{Exe: "/usr/sbin/NetworkManager", Cmdline: []string{"/usr/sbin/NetworkManager", "--no-daemon"},
			Cgroup: "/system.slice/NetworkManager.service", Unit: "NetworkManager.service"}}
	evs := slices.Concat(incident(), []*event.Event{
		route(t0.Add(time.Hour), event.OpDelete, nm, routeSpec{dst: "0.0.0.0/0", gw: "192.0.2.254", dev: "nd0", oif: ndIfindex, table: 254, proto: 3, metric: 100}),
	})
	r := why(t, "8.8.8.8", evs)
	got := text(t, r)
	want := []string{
		"8.8.8.8: 3 routes and rules that cover it changed: 3 last DELETED. Removed by NetworkManager.service (NetworkManager[655]) (1), systemd-networkd.service (systemd-network[412]) (2).",
		"",
		"default via 192.0.2.254 dev nd0 table main proto boot was DELETED 2026-11-27 04:04:05 (5h ago) by NetworkManager.service (NetworkManager[655], /usr/sbin/NetworkManager) — its only removal around then",
		"  actor: NetworkManager[655] uid 0, parent systemd[1], unit NetworkManager.service, cgroup /system.slice/NetworkManager.service",
		"  command: /usr/sbin/NetworkManager --no-daemon",
	}
	wantLines(t, got[:len(want)], want)
	if r.Changes[0].Match != MatchCovers {
		t.Errorf("default route: match %s, want covers", r.Changes[0].Match)
	}
	var nmAdvice *Advice
	for i := range r.Advice {
		if r.Advice[i].Actor == "NetworkManager" {
			nmAdvice = &r.Advice[i]
		}
	}
	if nmAdvice == nil {
		t.Fatalf("no NetworkManager advice: %+v", r.Advice)
	}
	wantSteps := []string{
		"Mark the CNI interfaces unmanaged (use your CNI's interface names; Calico's are shown) in /etc/NetworkManager/conf.d/99-cni-unmanaged.conf:",
		"  [keyfile]",
		"  unmanaged-devices=interface-name:cali*",
		"then: systemctl reload NetworkManager",
	}
	if !slices.Equal(nmAdvice.Steps, wantSteps) {
		t.Errorf("NetworkManager steps %q, want %q", nmAdvice.Steps, wantSteps)
	}
}

// networkd removed only rules: the fix names only the rules setting.
func TestWhyRulesOnly(t *testing.T) {
	nd := networkd()
	evs := []*event.Event{
		rule(t0, event.OpDelete, nd, ruleSpec{dst: "10.244.0.5/32", pref: 512, table: 254}),
		rule(t0.Add(ms(10)), event.OpDelete, nd, ruleSpec{src: "10.244.0.5/32", pref: 1536, table: 101}),
	}
	r := why(t, "10.244.0.5", evs)
	if len(r.Advice) != 1 {
		t.Fatalf("advice %+v, want one", r.Advice)
	}
	want := Advice{Actor: "systemd-networkd",
		Why: "systemd-networkd removes the routing policy rules it did not configure: ManageForeignRoutingPolicyRules= (systemd 249+) defaults to yes. It removed no routes itself here.",
		Steps: []string{
			"Put in /etc/systemd/networkd.conf, or a drop-in such as /etc/systemd/networkd.conf.d/90-keep-foreign.conf:",
			"  [Network]",
			"  ManageForeignRoutingPolicyRules=no",
			"networkd reads it when it starts: it applies from networkd's next start.",
		}}
	if a := r.Advice[0]; a.Actor != want.Actor || a.Why != want.Why || !slices.Equal(a.Steps, want.Steps) {
		t.Errorf("advice\n got: %+v\nwant: %+v", a, want)
	}
	if got := text(t, r)[2]; got != "rule pref 1536 from 10.244.0.5 lookup 101 was DELETED "+whenRestart+" by "+ndName+" — one of 2 removals by it in 10 ms (2 rules)" {
		t.Errorf("headline %q", got)
	}
}

// The JSON names the actor as the VM check reads it: unit, comm, pid, and
// the advice.
func TestWhyJSON(t *testing.T) {
	r := why(t, "10.244.1.7", incident())
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Target        string `json:"target"`
		Answer        string `json:"answer"`
		EventsScanned int    `json:"events_scanned"`
		JournalFrom   string `json:"journal_from"`
		Changes       []struct {
			Match       string `json:"match"`
			State       string `json:"state"`
			Description string `json:"description"`
			Last        struct {
				Op     string `json:"op"`
				Origin string `json:"origin"`
				Path   string `json:"path"`
				Dst    string `json:"dst"`
				Actor  struct {
					Kernel bool `json:"kernel"`
				} `json:"actor"`
				Cause struct {
					Object string `json:"object"`
					Prefix string `json:"prefix"`
					Actor  struct {
						Pid      uint32   `json:"pid"`
						Comm     string   `json:"comm"`
						Unit     string   `json:"unit"`
						Enriched bool     `json:"enriched"`
						Cmdline  []string `json:"cmdline"`
					} `json:"actor"`
				} `json:"cause"`
				Responsible string `json:"responsible"`
			} `json:"last"`
			Burst struct {
				Removals       int     `json:"removals"`
				SpanSeconds    float64 `json:"span_seconds"`
				RoutesByKernel int     `json:"routes_by_kernel"`
				Rules          struct {
					Delete int `json:"delete"`
				} `json:"rules"`
			} `json:"burst"`
		} `json:"changes"`
		Advice []struct {
			Actor string   `json:"actor"`
			Steps []string `json:"steps"`
		} `json:"advice"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, b.String())
	}
	if got.Target != "10.244.1.7" || got.Answer != "found" || got.EventsScanned != 29 || got.JournalFrom != "2026-11-27T01:04:05.100000000Z" {
		t.Errorf("header: %+v", got)
	}
	// The /24 the kernel removed, then the iif rules.
	if len(got.Changes) != 3 {
		t.Fatalf("%d changes, want 3: %s", len(got.Changes), b.String())
	}
	c := got.Changes[0]
	if c.Match != "covers" || c.State != "deleted" || c.Last.Op != "delete" || c.Last.Origin != "kernel" || c.Last.Path != "fib_inetaddr_event" ||
		c.Last.Dst != "10.244.1.0/24" || !c.Last.Actor.Kernel || c.Last.Cause.Object != "address" || c.Last.Cause.Prefix != "198.18.0.1/24" ||
		c.Last.Cause.Actor.Pid != 412 || c.Last.Cause.Actor.Comm != "systemd-network" || c.Last.Cause.Actor.Unit != "systemd-networkd.service" ||
		!c.Last.Cause.Actor.Enriched || !slices.Equal(c.Last.Cause.Actor.Cmdline, []string{"/lib/systemd/systemd-networkd"}) ||
		c.Last.Responsible != ndName {
		t.Errorf("change 0: %+v", c)
	}
	if c.Burst.Removals != 15 || c.Burst.RoutesByKernel != 3 || c.Burst.Rules.Delete != 6 || c.Burst.SpanSeconds != 0.3 {
		t.Errorf("burst: %+v", c.Burst)
	}
	if len(got.Advice) != 1 || got.Advice[0].Actor != "systemd-networkd" || !slices.Contains(got.Advice[0].Steps, "  ManageForeignRoutes=no") {
		t.Errorf("advice: %+v", got.Advice)
	}
}

// A journal of many short-lived actors (an `ip` per change, a CNI plugin
// per pod) keeps only the bursts that can still grow.
func TestWhyMemoryBounded(t *testing.T) {
	target := netip.MustParsePrefix("10.200.0.7/32")
	inv := NewInvestigation(target, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	maxActors := 0
	for i := range 200_000 {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + rng.IntN(50)), byte(i >> 8), byte(i)}), 32)
		op := event.OpAdd
		if i%2 == 1 {
			op = event.OpDelete
		}
		inv.Add(route(at, op, ipTool(uint32(10000+i)), routeSpec{dst: dst.String(), dev: "eth0", oif: 2, table: 254, proto: 4}))
		maxActors = max(maxActors, len(inv.actors))
	}
	// 11 s of slack at one actor per 10 ms, plus one sweep interval.
	if maxActors > 1100+sweepEvery+10 {
		t.Errorf("kept up to %d actors, want at most the sweep horizon's", maxActors)
	}
	if len(inv.objects) > 8 {
		t.Errorf("kept %d objects for a /32 target", len(inv.objects))
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "10.244.1.7", want: "10.244.1.7/32"},
		{in: " 10.244.1.0/24 ", want: "10.244.1.0/24"},
		{in: "10.244.1.7/24", want: "10.244.1.0/24"},
		{in: "fd00::5", want: "fd00::5/128"},
		{in: "::ffff:10.1.2.3", want: "10.1.2.3/32"},
		{in: "::ffff:10.1.2.0/120", want: "10.1.2.0/24"},
		{in: "10.244.1", err: `"10.244.1" is not an address or a prefix`},
		{in: "10.0.0.0/33", err: `"10.0.0.0/33" is not an address or a prefix`},
		{in: "fe80::1%eth0", err: "a zone is not part of a route's destination"},
	} {
		p, err := ParseTarget(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseTarget(%q) = %v, %v; want error %q", tc.in, p, err, tc.err)
		case tc.err == "" && (err != nil || p.String() != tc.want):
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}

// --since leaves out older changes, and says so when nothing is left.
func TestWhySince(t *testing.T) {
	p, _ := ParseTarget("10.244.0.5")
	r := Why(slices.Values(incident()), p, Options{Since: t0.Add(-time.Hour)}, now)
	r.Location = time.UTC
	if r.EventsScanned != 15 || r.EventsBeforeSince != 14 {
		t.Errorf("scanned %d, before since %d: want the restart's 15 and the setup's 14", r.EventsScanned, r.EventsBeforeSince)
	}
	// The /32 routes were only added, before --since: they are not shown.
	for _, c := range r.Changes {
		if c.Event.Op != event.OpDelete {
			t.Errorf("a change from before --since: %s", describe(&c.Event))
		}
	}
	r = Why(slices.Values(incident()), p, Options{Since: now}, now)
	r.Location = time.UTC
	wantLines(t, text(t, r), []string{
		"10.244.0.5: nothing in the journal covers it: no route whose destination holds it, and no rule that selects it, changed.",
		"  No events since 2026-11-27 09:04:05: the journal's 29 are older. Ask from earlier.",
		"  Look wider with: routetrace history --dst 10.244.0.0/16",
	})
}
