package repair

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
	"github.com/routetrace/routetrace/policy"
	"github.com/routetrace/routetrace/rtnl"
)

// protected stands in for the policy's protect entries: these prefixes
// (any table), every route in table 100, rules of priority 100-199,
// nexthops 10-19.
var protectedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8:1::/48"),
}

func protected(ev *event.Event) bool {
	switch ev.Object {
	case event.ObjectRule:
		return ev.Priority >= 100 && ev.Priority < 200
	case event.ObjectNexthop:
		return ev.NexthopID >= 10 && ev.NexthopID < 20
	case event.ObjectRoute:
		if ev.Table == 100 {
			return true
		}
		for _, p := range protectedPrefixes {
			if p.Contains(ev.Dst.Addr()) && ev.Dst.Bits() >= p.Bits() {
				return true
			}
		}
	}
	return false
}

// wouldBlock stands in for the policy's Judge: a protected deletion by an
// actor other than "allowed-ip".
func wouldBlock(ev *event.Event) bool {
	return ev.Op == event.OpDelete && protected(ev) && ev.Actor.Comm.String() != "allowed-ip"
}

func TestRepairExactAttributes(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("nexthop", "add", "id", "10", "via", "192.0.2.5", "dev", "v0")
	routes := []struct {
		add   []string
		dst   string
		table int
	}{
		{[]string{"route", "add", "198.51.100.0/24", "proto", "static", "nexthop", "via", "192.0.2.2", "dev", "v0", "weight", "3", "nexthop", "via", "192.0.2.3", "dev", "v0", "weight", "7"}, "198.51.100.0/24", 254},
		{[]string{"route", "add", "203.0.113.0/25", "via", "192.0.2.4", "dev", "v0", "mtu", "1400", "advmss", "1360", "src", "192.0.2.1", "metric", "20"}, "203.0.113.0/25", 254},
		{[]string{"route", "add", "203.0.113.128/25", "nhid", "10"}, "203.0.113.128/25", 254},
		{[]string{"route", "add", "10.244.1.5/32", "dev", "v0", "table", "100", "proto", "static", "metric", "50"}, "10.244.1.5/32", 100},
		{[]string{"route", "add", "10.9.0.0/16", "via", "10.8.0.1", "dev", "v1", "onlink"}, "10.9.0.0/16", 254},
		{[]string{"-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8::2", "dev", "v0", "metric", "1024", "pref", "high", "mtu", "1300"}, "2001:db8:1::/64", 254},
		{[]string{"-6", "route", "add", "2001:db8:1:1::/64", "nexthop", "via", "2001:db8::3", "dev", "v0", "weight", "2", "nexthop", "via", "2001:db8::4", "dev", "v0", "weight", "5"}, "2001:db8:1:1::/64", 254},
	}
	for _, r := range routes {
		ns.IP(r.add...)
	}
	ns.IP("rule", "add", "pref", "100", "from", "10.244.0.0/16", "fwmark", "0x10/0xff", "lookup", "100")
	ns.IP("-6", "rule", "add", "pref", "101", "to", "2001:db8:2::/48", "iif", "v0", "lookup", "100")

	h := start(t, ns, Options{Keep: protected}, wouldBlock)
	nl := handle(t, ns)

	for _, r := range routes {
		before, ok := routeOf(t, nl, r.dst, r.table)
		if !ok {
			t.Fatalf("%s: not there before", r.dst)
		}
		del := append([]string{}, r.add...)
		del[slicesIndex(del, "add")] = "del"
		pid := ns.IP(del...)
		ev := h.next("deleting "+r.dst, deleteOf(r.dst))
		if ev.Actor.Tgid != pid {
			t.Errorf("%s: actor %d, want %d (ip)", r.dst, ev.Actor.Tgid, pid)
		}
		if ev.Enforcement.Verdict != event.VerdictRepaired || ev.Enforcement.Reason != "" || ev.Enforcement.Missing <= 0 {
			t.Errorf("%s: enforcement %+v, want repaired with Missing > 0 and no reason", r.dst, ev.Enforcement)
		}
		after, ok := routeOf(t, nl, r.dst, r.table)
		if !ok {
			t.Errorf("%s: not repaired", r.dst)
			continue
		}
		if d := diff(before, after); d != "" {
			t.Errorf("%s: repaired with other attributes: %s", r.dst, d)
		}
	}

	for _, r := range []struct {
		family, prio int
		del          []string
	}{
		{4, 100, []string{"rule", "del", "pref", "100"}},
		{6, 101, []string{"-6", "rule", "del", "pref", "101"}},
	} {
		fam := 2
		if r.family == 6 {
			fam = 10
		}
		before, ok := ruleOf(t, nl, fam, r.prio)
		if !ok {
			t.Fatalf("rule %d not there before", r.prio)
		}
		ns.IP(r.del...)
		ev := h.next("deleting rule "+strconv.Itoa(r.prio), func(ev *event.Event) bool {
			return ev.Object == event.ObjectRule && ev.Op == event.OpDelete && ev.Priority == uint32(r.prio)
		})
		if ev.Enforcement.Verdict != event.VerdictRepaired || ev.Enforcement.Missing <= 0 {
			t.Errorf("rule %d: enforcement %+v, want repaired", r.prio, ev.Enforcement)
		}
		after, ok := ruleOf(t, nl, fam, r.prio)
		if !ok {
			t.Errorf("rule %d: not repaired", r.prio)
			continue
		}
		if d := diff(before, after); d != "" {
			t.Errorf("rule %d: repaired with other attributes: %s", r.prio, d)
		}
	}

	// The repairs were this process's own changes: never reported.
	deadline := time.After(700 * time.Millisecond) // past tier 3's wait for a request
	for {
		select {
		case ev := <-h.evs:
			if ev.Netns != ns.Inode {
				continue
			}
			if ev.Op == event.OpAdd && !ev.Actor.Kernel { // the kernel adds link-local routes as DAD ends
				t.Errorf("the repair of %v was reported as a change: %+v", ev.Dst, ev)
			}
			if ev.Op == event.OpDelete && ev.Enforcement.Verdict != event.VerdictRepaired {
				// e.g. the second hop of the IPv6 multipath route, its own
				// notification of the same request
				t.Errorf("late deletion of %v %v: %+v, want repaired", ev.Object, ev.Dst, ev.Enforcement)
			}
		case <-deadline:
			return
		}
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// allowedIP is a copy of ip(8) whose command name is "allowed-ip".
func allowedIP(t *testing.T) string {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip")
	}
	b, err := os.ReadFile(ip)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "allowed-ip")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnprotectedAndAllowedNotRepaired(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "192.0.2.128/25", "via", "192.0.2.9", "table", "200") // not protected
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.9")                // protected
	h := start(t, ns, Options{Keep: protected}, wouldBlock)
	nl := handle(t, ns)
	if n := h.r.Snapshots(ns.Inode); n != 1 {
		t.Errorf("%d objects kept, want 1 (the protected route)", n)
	}

	ns.IP("route", "del", "192.0.2.128/25", "table", "200")
	ev := h.next("the unprotected deletion", deleteOf("192.0.2.128/25"))
	if ev.Enforcement != (event.Enforcement{}) {
		t.Errorf("unprotected: enforcement %+v, want none", ev.Enforcement)
	}
	if _, ok := routeOf(t, nl, "192.0.2.128/25", 200); ok {
		t.Error("unprotected route put back")
	}

	if _, out, err := testnet.Run(allowedIP(t), "-n", ns.Name, "route", "del", "198.51.100.0/24"); err != nil {
		t.Fatalf("allowed-ip: %v: %s", err, out)
	}
	ev = h.next("the allowed deletion", deleteOf("198.51.100.0/24"))
	if ev.Actor.Comm.String() != "allowed-ip" || ev.Enforcement != (event.Enforcement{}) {
		t.Errorf("allowed: actor %q enforcement %+v, want allowed-ip and none", ev.Actor.Comm.String(), ev.Enforcement)
	}
	time.Sleep(50 * time.Millisecond)
	if _, ok := routeOf(t, nl, "198.51.100.0/24", 254); ok {
		t.Error("allowed deletion undone")
	}
}

func TestBackoff(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "10.244.1.5/32", "dev", "v0", "table", "100")
	h := start(t, ns, Options{Keep: protected, MaxRepairs: 2, Window: 10 * time.Second, Backoff: time.Second}, wouldBlock)
	nl := handle(t, ns)

	del := func() (seen, uint32) {
		pid := ns.IP("route", "del", "10.244.1.5/32", "table", "100")
		return h.next("deletion", deleteOf("10.244.1.5/32")), pid
	}
	for i := range 2 {
		if ev, _ := del(); ev.Enforcement.Verdict != event.VerdictRepaired {
			t.Fatalf("deletion %d: %+v, want repaired", i+1, ev.Enforcement)
		}
	}
	ev, pid := del()
	want := "backing off 1s: deleted 3 times in 10s by ip (pid " + strconv.Itoa(int(pid)) + ")"
	if ev.Enforcement.Verdict != event.VerdictWouldBlock || ev.Enforcement.Reason != want {
		t.Errorf("third deletion: %+v, want would-block %q", ev.Enforcement, want)
	}
	if _, ok := routeOf(t, nl, "10.244.1.5/32", 100); ok {
		t.Error("repaired while backing off")
	}
	// Put back by hand while backing off, deleted again: left alone.
	ns.IP("route", "add", "10.244.1.5/32", "dev", "v0", "table", "100")
	ev, _ = del()
	if ev.Enforcement.Verdict != event.VerdictWouldBlock || !strings.HasPrefix(ev.Enforcement.Reason, "not repaired: backing off for ") {
		t.Errorf("deletion while backing off: %+v", ev.Enforcement)
	}
	time.Sleep(1100 * time.Millisecond)
	ns.IP("route", "add", "10.244.1.5/32", "dev", "v0", "table", "100")
	if ev, _ = del(); ev.Enforcement.Verdict != event.VerdictRepaired {
		t.Errorf("after the backoff: %+v, want repaired", ev.Enforcement)
	}
}

func TestNoSnapshot(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "10.244.7.0/24", "dev", "v0", "table", "100")
	// The store keeps nothing: the judge still calls it protected.
	h := start(t, ns, Options{Keep: func(*event.Event) bool { return false }}, wouldBlock)
	ns.IP("route", "del", "10.244.7.0/24", "table", "100")
	ev := h.next("deletion", deleteOf("10.244.7.0/24"))
	want := event.Enforcement{Verdict: event.VerdictWouldBlock, Reason: "repair failed: no snapshot of 10.244.7.0/24 table 100"}
	if ev.Enforcement != want {
		t.Errorf("enforcement %+v, want %+v", ev.Enforcement, want)
	}
}

func TestDeviceGone(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "10.9.0.0/16", "via", "10.8.0.1", "dev", "v1", "onlink")
	kernel := func(ev *event.Event) bool { return ev.Origin == event.OriginKernel && protected(ev) }
	h := start(t, ns, Options{Keep: protected}, func(ev *event.Event) bool { return ev.Op == event.OpDelete && kernel(ev) })
	ns.IP("link", "del", "v1") // its peer v0 goes too; the kernel flushes the route
	ev := h.next("the kernel's removal", deleteOf("10.9.0.0/16"))
	want := event.Enforcement{Verdict: event.VerdictWouldBlock, Reason: "repair failed: device gone"}
	if ev.Origin != event.OriginKernel || ev.Enforcement != want {
		t.Errorf("origin %v enforcement %+v, want kernel %+v", ev.Origin, ev.Enforcement, want)
	}
}

// TestFlushRepairedFromDiff: tiers 1-2 report a flush as a count. The
// routes it took are found by diffing the snapshot against a fresh dump:
// here an address removal flushed a route through a gateway in its subnet
// without a notification, and the address came back before the repair.
func TestFlushRepairedFromDiff(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "metric", "7")
	ns.IP("route", "add", "203.0.113.0/24", "dev", "v1") // protected, not flushed
	r, err := New(Options{Netns: []string{ns.Path}, Keep: protected})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	nl := handle(t, ns)
	before, _ := routeOf(t, nl, "198.51.100.0/24", 254)

	ns.IP("addr", "del", "192.0.2.1/24", "dev", "v0")
	if _, ok := routeOf(t, nl, "198.51.100.0/24", 254); ok {
		t.Fatal("the kernel did not flush the route")
	}
	ns.IP("addr", "add", "192.0.2.1/24", "dev", "v0")
	ev := event.Event{Time: time.Now(), Op: event.OpFlush, Object: event.ObjectRoute, Family: event.FamilyInet, Netns: ns.Inode, Count: 1}
	r.Deleted(&ev)
	if ev.Enforcement.Verdict != event.VerdictRepaired || ev.Enforcement.Missing <= 0 || ev.Enforcement.Reason != "" {
		t.Errorf("enforcement %+v, want repaired", ev.Enforcement)
	}
	after, ok := routeOf(t, nl, "198.51.100.0/24", 254)
	if !ok {
		t.Fatal("not repaired")
	}
	if d := diff(before, after); d != "" {
		t.Errorf("repaired with other attributes: %s", d)
	}

	ev = event.Event{Time: time.Now(), Op: event.OpFlush, Object: event.ObjectRoute, Family: event.FamilyInet, Netns: ns.Inode, Count: 1}
	r.Deleted(&ev)
	want := event.Enforcement{Verdict: event.VerdictWouldBlock, Reason: "not repaired: no protected route is missing after the flush"}
	if ev.Enforcement != want {
		t.Errorf("nothing missing: %+v, want %+v", ev.Enforcement, want)
	}
}

// TestFollowsNamespacesAsTheyCome: without Options.Netns every namespace
// is followed, one created later too (at the watcher's next scan), and
// forgotten when it goes.
func TestFollowsNamespacesAsTheyCome(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	r, err := New(Options{Keep: protected})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ns := testnet.New(t)
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.2")
	waitFor(t, "the new namespace's route snapshotted", func() bool { return r.Snapshots(ns.Inode) == 1 })

	ns.IP("route", "del", "198.51.100.0/24")
	ev := event.Event{Time: time.Now(), Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Table: 254, Dst: netip.MustParsePrefix("198.51.100.0/24"), Netns: ns.Inode}
	r.Deleted(&ev)
	if ev.Enforcement.Verdict != event.VerdictRepaired {
		t.Errorf("enforcement %+v, want repaired", ev.Enforcement)
	}
	if _, ok := routeOf(t, handle(t, ns), "198.51.100.0/24", 254); !ok {
		t.Error("not repaired")
	}

	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	waitFor(t, "the namespace forgotten", func() bool { return r.Snapshots(ns.Inode) == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
	}
}

// TestNexthopAndItsRoutes: deleting a nexthop object makes the kernel
// remove the routes through it (IPv4 ones without a notification, which
// tier 3 finds by a dump): the nexthop's repair brings them back, and the
// route's own event, the kernel's removal, says it was repaired.
func TestNexthopAndItsRoutes(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("nexthop", "add", "id", "10", "via", "192.0.2.5", "dev", "v0")
	ns.IP("route", "add", "203.0.113.128/25", "nhid", "10", "metric", "5")
	ns.IP("-6", "nexthop", "add", "id", "11", "via", "2001:db8::5", "dev", "v0")
	ns.IP("-6", "route", "add", "2001:db8:1:1::/64", "nhid", "11")
	h := start(t, ns, Options{Keep: protected}, func(ev *event.Event) bool {
		return ev.Op == event.OpDelete && protected(ev) // the kernel's removals too
	})
	nl := handle(t, ns)
	show := func() string {
		_, out, err := ns.TryIP("-d", "nexthop", "show")
		if err != nil {
			t.Fatalf("ip nexthop show: %v: %s", err, out)
		}
		return out
	}
	nhBefore := show()
	for _, c := range []struct {
		id    uint32
		route string
	}{{10, "203.0.113.128/25"}, {11, "2001:db8:1:1::/64"}} {
		before, _ := routeOf(t, nl, c.route, 254)
		ns.IP("nexthop", "del", "id", strconv.Itoa(int(c.id)))
		// The nexthop's repair puts the route back at once. Its removal
		// may still be reported: by tiers 1-2 as a flush, before the
		// nexthop (inside its deletion), by tier 3 as the kernel's
		// deletion (IPv6; an IPv4 route is back before a dump can miss it).
		var early []event.Event // the route's removal reported first (tiers 1-2)
		ev := h.next("deleting nexthop "+strconv.Itoa(int(c.id)), func(ev *event.Event) bool {
			if deleteOf(c.route)(ev) {
				early = append(early, *ev)
			}
			return ev.Object == event.ObjectNexthop && ev.Op == event.OpDelete && ev.NexthopID == c.id
		})
		deferred := "repair deferred: its nexthop (id " + strconv.Itoa(int(c.id)) + ") is gone too; the nexthop's repair brings it back"
		for _, e := range early {
			if e.Enforcement.Verdict != event.VerdictRepaired && e.Enforcement.Reason != deferred {
				t.Errorf("%s, reported before its nexthop: %+v, want repaired or %q", c.route, e.Enforcement, deferred)
			}
		}
		if ev.Enforcement.Verdict != event.VerdictRepaired {
			t.Errorf("nexthop %d: %+v, want repaired", c.id, ev.Enforcement)
		}
		t.Logf("nexthop %d: %+v, emitted %v after, portid %d origin %v", c.id, ev.Enforcement, ev.Emitted.Sub(ev.Time), ev.Portid, ev.Origin)
		for quiet := time.After(time.Second); ; {
			var route seen
			select {
			case route = <-h.evs:
			case <-quiet:
			}
			if route.Time.IsZero() {
				break
			}
			if route.Netns == ns.Inode && route.Object == event.ObjectRoute {
				t.Logf("then: %v %v %v by %v: %+v", route.Op, route.Dst, route.Origin, actorOf(&route.Event), route.Enforcement)
			}
			if route.Netns == ns.Inode && deleteOf(c.route)(&route.Event) && (route.Origin != event.OriginKernel ||
				route.Enforcement.Verdict != event.VerdictRepaired || route.Enforcement.Missing > 100*time.Millisecond) {
				t.Errorf("%s: origin %v %+v, want the kernel's, repaired with its nexthop (within 100 ms)", c.route, route.Origin, route.Enforcement)
			}
		}
		after, ok := routeOf(t, nl, c.route, 254)
		if !ok {
			t.Errorf("%s: not repaired", c.route)
		} else if d := diff(before, after); d != "" {
			t.Errorf("%s: repaired with other attributes: %s", c.route, d)
		}
	}
	if nhAfter := show(); nhAfter != nhBefore {
		t.Errorf("nexthops repaired as\n%s\nwant\n%s", nhAfter, nhBefore)
	}
}

// TestWithThePolicy wires the repairer as enforce does, with a real
// policy: interface and protocol protection are decided from the object's
// own attributes, as the snapshot records them.
func TestWithThePolicy(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	pol, err := policy.Parse("policy.yaml", []byte(`mode: repair
protect:
  - interface: "v1"
  - protocol: bird
  - prefix: 10.244.0.0/16
allow:
  - comm: allowed-ip
`))
	if err != nil {
		t.Fatal(err)
	}
	ns := testnet.New(t)
	// No IPv6 on v1: its link-local and multicast routes, protected too,
	// would come and go as the kernel configures it.
	if _, out, err := ns.Exec("sysctl", "-qw", "net.ipv6.conf.v1.disable_ipv6=1"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	ns.IP("route", "add", "10.50.0.0/16", "dev", "v1")
	ns.IP("route", "add", "10.60.0.0/16", "via", "192.0.2.2", "proto", "bird")
	ns.IP("route", "add", "10.244.3.0/24", "dev", "v0")
	ns.IP("route", "add", "10.70.0.0/16", "dev", "v0") // not protected
	h := start(t, ns, Options{Keep: func(ev *event.Event) bool { return pol.Protects(ev) != nil }},
		func(ev *event.Event) bool { return pol.Apply(ev, event.VerdictWouldBlock).Enforced() })
	if n := h.r.Snapshots(ns.Inode); n != 3 {
		t.Errorf("%d objects kept, want the 3 protected routes", n)
	}
	for _, c := range []struct{ dst, rule string }{
		{"10.50.0.0/16", "protect[0] interface v1 (policy.yaml:3)"},
		{"10.60.0.0/16", "protect[1] protocol bird (policy.yaml:4)"},
		{"10.244.3.0/24", "protect[2] prefix 10.244.0.0/16 (policy.yaml:5)"},
	} {
		ns.IP("route", "del", c.dst)
		ev := h.next("deleting "+c.dst, deleteOf(c.dst))
		if e := ev.Enforcement; e.Verdict != event.VerdictRepaired || e.Rule != c.rule || e.Reason != "" || e.Missing <= 0 {
			t.Errorf("%s: %+v, want repaired by %q", c.dst, e, c.rule)
		}
	}
	ns.IP("route", "del", "10.70.0.0/16")
	if ev := h.next("deleting 10.70.0.0/16", deleteOf("10.70.0.0/16")); ev.Enforcement != (event.Enforcement{}) {
		t.Errorf("unprotected: %+v, want no verdict", ev.Enforcement)
	}
}

// TestOwnNamespaceOnly: enforce's default scope, routetrace's own
// namespace, follows no other.
func TestOwnNamespaceOnly(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.2")
	r, err := New(Options{Netns: []string{"/proc/self/ns/net"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	self, err := rtnl.NetnsInode("")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Snapshots(self); n == 0 {
		t.Error("own namespace: nothing kept")
	}
	if n := r.Snapshots(ns.Inode); n != 0 {
		t.Errorf("another namespace: %d objects kept, want none", n)
	}
}

// A repair the kernel refuses for a moment (the gateway unreachable while
// the address that reaches it is re-added, as networkd's restart does) is
// retried, and succeeds once the address is back.
func TestTransientRefusalRetried(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("addr", "add", "198.18.0.2/24", "dev", "v0")
	ns.IP("route", "add", "198.51.100.0/24", "via", "198.18.0.1", "dev", "v0", "proto", "static")
	h := start(t, ns, Options{Keep: protected}, wouldBlock)
	// The route goes, and in the same breath the address that reaches its
	// gateway (one ip -batch: microseconds apart, before the repair), which
	// comes back 60 ms later.
	batch := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(batch, []byte("route del 198.51.100.0/24\naddr del 198.18.0.2/24 dev v0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.IP("-batch", batch)
	go func() {
		time.Sleep(60 * time.Millisecond)
		ns.IP("addr", "add", "198.18.0.2/24", "dev", "v0")
	}()
	ev := h.next("the deletion", deleteOf("198.51.100.0/24"))
	if ev.Enforcement.Verdict != event.VerdictRepaired {
		t.Fatalf("enforcement %+v, want repaired", ev.Enforcement)
	}
	if _, out, _ := ns.TryIP("route", "show", "198.51.100.0/24"); !strings.Contains(out, "198.51.100.0/24 via 198.18.0.1 dev v0 proto static") {
		t.Errorf("route after the repair: %q", out)
	}
}
