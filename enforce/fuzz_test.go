package enforce

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/nltest"
	"github.com/routetrace/routetrace/policy"
)

// fuzzPolicy builds a policy and its dynamic facts from fuzzed bytes, so
// that the fuzzer explores policies as well as requests.
func fuzzPolicy(b []byte, comm string) (*policy.Policy, []Iface, []Route, bool) {
	var buf [40]byte
	copy(buf[:], b)
	u16 := func(i int) uint32 { return uint32(binary.LittleEndian.Uint16(buf[i:])) }
	flags := buf[0]
	p := &policy.Policy{Operations: policy.Operations{Replace: flags&1 != 0, MoreSpecific: flags&2 != 0}}
	v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte(buf[1:5])), int(buf[5]%33)).Masked()
	v6 := netip.PrefixFrom(netip.AddrFrom16([16]byte(buf[6:22])), int(buf[22]%129)).Masked()
	p.Protect = append(p.Protect,
		policy.Protect{Prefix: v4},
		policy.Protect{Prefix: v6},
		policy.Protect{Table: u16(23) % 300},
		policy.Protect{Protocol: buf[25], HasProtocol: flags&4 != 0},
		policy.Protect{Rule: &policy.RuleSelector{PriorityMin: u16(26) % 300, PriorityMax: u16(26)%300 + u16(28)%100,
			HasPriority: flags&8 != 0, Table: uint32(buf[30]), Family: []uint8{0, unix.AF_INET, unix.AF_INET6}[buf[31]%3]}},
		policy.Protect{Nexthop: &policy.NexthopSelector{IDMin: uint32(buf[32]), IDMax: uint32(buf[32]) + uint32(buf[33]), Groups: flags&16 != 0}},
		policy.Protect{Interface: "fuzz*"},
	)
	if flags&32 != 0 {
		p.Allow = append(p.Allow, policy.Allow{Comm: comm})
	}
	ifaces := []Iface{{Netns: testNetns, Ifindex: uint32(buf[34]), Rule: 6}}
	route := netip.PrefixFrom(netip.AddrFrom4([4]byte(buf[35:39])), int(buf[39]%33)).Masked()
	routes := []Route{{Netns: testNetns, Dst: route, Table: uint32(buf[30]), Rule: 6}}
	return p, ifaces, routes, flags&32 != 0
}

// FuzzEnforceMatcher feeds fuzzed requests and policies to the BPF walk
// and matcher and to the reference matcher: they must decide alike.
func FuzzEnforceMatcher(f *testing.F) {
	pol := make([]byte, 40)
	pol[0] = 1
	copy(pol[1:], []byte{10, 244, 0, 0, 16})
	for _, tc := range matcherCases() {
		if len(tc.msgs) < 4096 {
			f.Add(tc.msgs, pol)
		}
	}
	f.Add(delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_MULTIPATH, nltest.Rtnexthop(9, nil)).Bytes(),
		append([]byte{3, 10, 0, 0, 0, 8}, make([]byte, 28)...))
	h := loadHarness(f)
	h.maps.noWait = true
	comm := selfComm(f)
	f.Fuzz(func(t *testing.T, msgs, polBytes []byte) {
		if len(msgs) > 8192 {
			return
		}
		p, ifaces, routes, allowed := fuzzPolicy(polBytes, comm)
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.maps.SetNamespaces([]uint32{testNetns}); err != nil {
			t.Fatal(err)
		}
		if err := h.maps.SetProtectedInterfaces(ifaces); err != nil {
			t.Fatal(err)
		}
		old := h.maps.Facts().Routes
		stale := make([]Route, 0, len(old))
		for id := range old {
			stale = append(stale, Route{Netns: id.netns, Dst: id.dst, Table: id.table})
		}
		if err := h.maps.UnprotectRoutes(stale); err != nil {
			t.Fatal(err)
		}
		if err := h.maps.ProtectRoutes(routes); err != nil {
			t.Fatal(err)
		}
		if err := h.maps.Apply(c); err != nil {
			t.Fatal(err)
		}
		facts := h.maps.Facts()
		got := h.run(t, testNetns, msgs)
		bpf := Decision{Refused: got.Refused, Rule: got.Rule, Reason: got.Reason, MsgIndex: got.MsgIndex, Msgs: got.Msgs}
		if ref := Judge(&facts, testNetns, allowed, msgs); ref != bpf {
			t.Fatalf("BPF %+v, reference %+v\nmsgs %x\npolicy %x", bpf, ref, msgs, polBytes)
		}
	})
}

// TestFlipNoGap flips between two policies while requests are judged: a
// protected delete is refused every time, by the rule of the generation
// that judged it, never by a half-written or an empty policy.
func TestFlipNoGap(t *testing.T) {
	h := loadHarness(t)
	// the same prefix under two rule ids: a is protect[0], b protect[1]
	a := testPolicy()
	b := testPolicy()
	b.Protect[rPrefix4], b.Protect[rPrefix6] = b.Protect[rPrefix6], b.Protect[rPrefix4]
	applyTestFacts(t, h.maps, a)
	ca, err := Compile(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Compile(b)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 200; i++ {
			c := ca
			if i%2 == 0 {
				c = cb
			}
			if err := h.maps.Apply(c); err != nil {
				done <- err
				return
			}
		}
		stop.Store(true)
		done <- nil
	}()
	prefixDel := delRoute(inet, 24, "10.244.1.0", tmain).Bytes()
	routeDel := delRoute(inet, 24, "192.168.50.0", 0).Bytes() // a dynamic fact
	runs := 0
	for !stop.Load() {
		r := h.run(t, testNetns, prefixDel)
		// generations alternate: odd ones are b's after applyTestFacts' first
		want := uint32(rPrefix4)
		if r.Generation%2 == 0 {
			want = rPrefix6
		}
		if !r.Refused || r.Rule != want || r.Reason != ReasonProtected {
			t.Fatalf("run %d: %+v, want refused by rule %d of generation %d", runs, r, want, r.Generation)
		}
		if r := h.run(t, testNetns, routeDel); !r.Refused || r.Rule != rIface {
			t.Fatalf("run %d: existing route %+v, want refused by rule %d", runs, r, rIface)
		}
		runs++
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if runs < 20 {
		t.Fatalf("only %d runs during the flips: the test did not overlap them", runs)
	}
	t.Logf("%d runs across 200 flips", runs)
}
