package enforce

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/nltest"
	"github.com/routetrace/routetrace/policy"
)

// The walk and matcher run through enforce_test (BPF_PROG_TEST_RUN) on
// requests built from Go tables; every case checks the BPF decision field
// by field and requires the reference matcher (reference.go) to agree.

const (
	testNetns  = 4026530000 // an inode number no namespace of the host has
	otherNetns = 4026530001
	caliIndex  = 7
	nlDel      = unix.NLM_F_REQUEST | unix.NLM_F_ACK
	nlAdd      = unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_EXCL | unix.NLM_F_CREATE
	nlReplace  = unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_REPLACE | unix.NLM_F_CREATE
	inet       = unix.AF_INET
	inet6      = unix.AF_INET6
	tmain      = unix.RT_TABLE_MAIN
	protoBird  = 12
)

// Rule ids: indexes of testPolicy's Protect.
const (
	rPrefix4 = iota
	rPrefix6
	rTable
	rProtocol
	rRulePrio
	rNexthops
	rIface
	rRuleTable6
	rGroups
)

func testPolicy() *policy.Policy {
	w := policy.Where{File: "test.yaml"}
	return &policy.Policy{
		Source: "test.yaml",
		Mode:   policy.ModeBlock,
		Protect: []policy.Protect{
			rPrefix4:    {At: w, Prefix: netip.MustParsePrefix("10.244.0.0/16")},
			rPrefix6:    {At: w, Prefix: netip.MustParsePrefix("2001:db8:1::/48")},
			rTable:      {At: w, Table: 1000},
			rProtocol:   {At: w, Protocol: protoBird, HasProtocol: true},
			rRulePrio:   {At: w, Rule: &policy.RuleSelector{PriorityMin: 100, PriorityMax: 199, HasPriority: true, Family: inet}},
			rNexthops:   {At: w, Nexthop: &policy.NexthopSelector{IDMin: 500, IDMax: 599}},
			rIface:      {At: w, Interface: "cali*"},
			rRuleTable6: {At: w, Rule: &policy.RuleSelector{Table: 2000, Family: inet6}},
			rGroups:     {At: w, Nexthop: &policy.NexthopSelector{Groups: true}},
		},
		Operations: policy.Operations{Replace: true},
	}
}

// ruleNames names rule ids as the CLI would.
func ruleNames(p *policy.Policy) []string {
	out := make([]string, len(p.Protect))
	for i := range p.Protect {
		out[i] = fmt.Sprintf("protect[%d]", i)
	}
	return out
}

// applyTestFacts applies p with the dynamic facts every case assumes.
func applyTestFacts(tb testing.TB, m *Maps, p *policy.Policy) {
	tb.Helper()
	c, err := Compile(p)
	if err != nil {
		tb.Fatal(err)
	}
	for _, err := range []error{
		m.SetNamespaces([]uint32{testNetns}),
		m.SetProtectedInterfaces([]Iface{{Netns: testNetns, Ifindex: caliIndex, Rule: rIface}}),
		m.ProtectRoutes([]Route{
			{Netns: testNetns, Dst: netip.MustParsePrefix("192.168.50.0/24"), Rule: rIface},
			{Netns: testNetns, Dst: netip.MustParsePrefix("2001:db8:9::/64"), Table: 300, Rule: rIface},
		}),
		m.Apply(c),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func delRoute(family, dstLen uint8, dst string, table uint8) *nltest.Msg {
	m := nltest.NewMsg(unix.RTM_DELROUTE, nlDel, 1, 0, nltest.Rtmsg(family, dstLen, 0, 0, table, 0, unix.RT_SCOPE_NOWHERE, 0))
	if dst != "" {
		m.Attr(unix.RTA_DST, nltest.IP(dst))
	}
	return m
}

func routeMsg(typ, flags uint16, family, dstLen, table, proto uint8) *nltest.Msg {
	return nltest.NewMsg(typ, flags, 1, 0, nltest.Rtmsg(family, dstLen, 0, 0, table, proto, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST))
}

func ruleMsg(typ, flags uint16, family, table uint8) *nltest.Msg {
	return nltest.NewMsg(typ, flags, 1, 0, nltest.FibRuleHdr(family, 0, 0, 0, table, unix.FR_ACT_TO_TBL))
}

func nhMsg(typ, flags uint16) *nltest.Msg {
	return nltest.NewMsg(typ, flags, 1, 0, nltest.Nhmsg(inet, 0, 0))
}

func linkMsg(typ, flags uint16, index int32, ifFlags, change uint32) *nltest.Msg {
	return nltest.NewMsg(typ, flags, 1, 0, nltest.Ifinfomsg(0, index, ifFlags, change))
}

// batch is n-1 harmless deletes, then last.
func batch(n int, last []byte) []byte {
	var b []byte
	for i := range n - 1 {
		b = append(b, delRoute(inet, 24, fmt.Sprintf("172.16.%d.0", i%256), tmain).Bytes()...)
	}
	return append(b, last...)
}

type matcherCase struct {
	name string
	msgs []byte
	want Decision
}

func refused(rule, reason, index uint32) Decision {
	return Decision{Refused: true, Rule: rule, Reason: reason, MsgIndex: index, Msgs: index + 1}
}

func passed(msgs uint32) Decision { return Decision{MsgIndex: msgs, Msgs: msgs} }

func matcherCases() []matcherCase {
	mp := func(ifindexes ...uint32) []byte {
		var b []byte
		for _, i := range ifindexes {
			b = append(b, nltest.Rtnexthop(i, nltest.Attr(unix.RTA_GATEWAY, nltest.IP("192.168.1.1")))...)
		}
		return b
	}
	protectedDel := delRoute(inet, 24, "10.244.1.0", tmain).Bytes()
	return []matcherCase{
		// routes by prefix
		{"delete inside a protected prefix", protectedDel, refused(rPrefix4, ReasonProtected, 0)},
		{"delete of the protected prefix itself", delRoute(inet, 16, "10.244.0.0", tmain).Bytes(), refused(rPrefix4, ReasonProtected, 0)},
		{"delete of a host route inside it", delRoute(inet, 32, "10.244.1.5", 0).Bytes(), refused(rPrefix4, ReasonProtected, 0)},
		{"delete of a wider prefix", delRoute(inet, 8, "10.0.0.0", tmain).Bytes(), passed(1)},
		{"delete outside", delRoute(inet, 24, "10.245.1.0", tmain).Bytes(), passed(1)},
		{"ipv6 delete inside", delRoute(inet6, 64, "2001:db8:1:2::", tmain).Bytes(), refused(rPrefix6, ReasonProtected, 0)},
		{"ipv6 delete outside", delRoute(inet6, 64, "2001:db8:2::", tmain).Bytes(), passed(1)},
		{"add inside: more-specific off", routeMsg(unix.RTM_NEWROUTE, nlAdd, inet, 24, tmain, 0).Attr(unix.RTA_DST, nltest.IP("10.244.1.0")).Bytes(), passed(1)},
		{"replace inside", routeMsg(unix.RTM_NEWROUTE, nlReplace, inet, 24, tmain, 0).Attr(unix.RTA_DST, nltest.IP("10.244.1.0")).Bytes(), refused(rPrefix4, ReasonProtected, 0)},
		// table as header or attribute
		{"delete in a protected table (rtm_table)", delRoute(inet, 24, "172.16.0.0", 0).Bytes(), passed(1)},
		{"delete in a protected table (RTA_TABLE)", delRoute(inet, 24, "172.16.0.0", unix.RT_TABLE_COMPAT).Attr(unix.RTA_TABLE, nltest.U32(1000)).Bytes(), refused(rTable, ReasonProtected, 0)},
		{"RTA_TABLE of a short length is ignored", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_TABLE, []byte{0xe8, 3}).Bytes(), passed(1)},
		// interfaces, existing routes
		{"delete with RTA_OIF of a protected interface", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_OIF, nltest.U32(caliIndex)).Bytes(), refused(rIface, ReasonProtected, 0)},
		{"delete with RTA_OIF of another interface", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_OIF, nltest.U32(caliIndex+1)).Bytes(), passed(1)},
		{"delete of an existing protected route without dev", delRoute(inet, 24, "192.168.50.0", 0).Bytes(), refused(rIface, ReasonProtected, 0)},
		{"delete of an existing protected route with host bits (ipv6)", delRoute(inet6, 64, "2001:db8:9::1", 0).Attr(unix.RTA_TABLE, nltest.U32(300)).Bytes(), refused(rIface, ReasonProtected, 0)},
		{"same route, other table", delRoute(inet6, 64, "2001:db8:9::", tmain).Bytes(), passed(1)},
		{"multipath through a protected interface", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_MULTIPATH, mp(2, 3, caliIndex)).Bytes(), refused(rIface, ReasonProtected, 0)},
		{"multipath elsewhere", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_MULTIPATH, mp(2, 3)).Bytes(), passed(1)},
		{"multipath with a short rtnexthop", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_MULTIPATH, append(mp(2), 4, 0, 0, 0, 0, 0, 0, 0)).Bytes(), refused(NoRule, ReasonBadNexthop, 0)},
		{"multipath with trailing bytes", delRoute(inet, 24, "172.16.0.0", tmain).Attr(unix.RTA_MULTIPATH, append(mp(2), 1, 2, 3, 4)).Bytes(), refused(NoRule, ReasonBadNexthop, 0)},
		// protocol: replace only
		{"replace with a protected protocol", routeMsg(unix.RTM_NEWROUTE, nlReplace, inet, 24, tmain, protoBird).Attr(unix.RTA_DST, nltest.IP("172.16.0.0")).Bytes(), refused(rProtocol, ReasonProtected, 0)},
		{"add with a protected protocol", routeMsg(unix.RTM_NEWROUTE, nlAdd, inet, 24, tmain, protoBird).Attr(unix.RTA_DST, nltest.IP("172.16.0.0")).Bytes(), passed(1)},
		// rules
		{"rule delete in a protected priority range", ruleMsg(unix.RTM_DELRULE, nlDel, inet, 0).Attr(unix.FRA_PRIORITY, nltest.U32(150)).Bytes(), refused(rRulePrio, ReasonProtected, 0)},
		{"rule delete outside the range", ruleMsg(unix.RTM_DELRULE, nlDel, inet, 0).Attr(unix.FRA_PRIORITY, nltest.U32(200)).Bytes(), passed(1)},
		{"rule delete without priority", ruleMsg(unix.RTM_DELRULE, nlDel, inet, tmain).Bytes(), refused(rRulePrio, ReasonNoPriority, 0)},
		{"ipv6 rule delete of a protected table", ruleMsg(unix.RTM_DELRULE, nlDel, inet6, 0).Attr(unix.FRA_TABLE, nltest.U32(2000)).Attr(unix.FRA_PRIORITY, nltest.U32(5)).Bytes(), refused(rRuleTable6, ReasonProtected, 0)},
		{"ipv6 rule delete of another table", ruleMsg(unix.RTM_DELRULE, nlDel, inet6, 0).Attr(unix.FRA_TABLE, nltest.U32(2001)).Bytes(), passed(1)},
		{"rule add", ruleMsg(unix.RTM_NEWRULE, nlAdd, inet, 0).Attr(unix.FRA_PRIORITY, nltest.U32(150)).Bytes(), passed(1)},
		// nexthops
		{"nexthop delete of a protected id", nhMsg(unix.RTM_DELNEXTHOP, nlDel).Attr(unix.NHA_ID, nltest.U32(550)).Bytes(), refused(rNexthops, ReasonProtected, 0)},
		{"nexthop delete of another id: may be a group", nhMsg(unix.RTM_DELNEXTHOP, nlDel).Attr(unix.NHA_ID, nltest.U32(7)).Bytes(), refused(rGroups, ReasonProtected, 0)},
		{"nexthop replace without a group", nhMsg(unix.RTM_NEWNEXTHOP, nlReplace).Attr(unix.NHA_ID, nltest.U32(7)).Bytes(), passed(1)},
		{"nexthop group replace", nhMsg(unix.RTM_NEWNEXTHOP, nlReplace).Attr(unix.NHA_ID, nltest.U32(7)).Attr(unix.NHA_GROUP, nltest.NexthopGrp(1, 2)).Bytes(), refused(rGroups, ReasonProtected, 0)},
		// links and addresses
		{"link delete of a protected interface", linkMsg(unix.RTM_DELLINK, nlDel, caliIndex, 0, 0).Bytes(), refused(rIface, ReasonProtected, 0)},
		{"link down of a protected interface", linkMsg(unix.RTM_NEWLINK, nlDel, caliIndex, 0, unix.IFF_UP).Bytes(), refused(rIface, ReasonProtected, 0)},
		{"link up of a protected interface", linkMsg(unix.RTM_NEWLINK, nlDel, caliIndex, unix.IFF_UP, unix.IFF_UP).Bytes(), passed(1)},
		{"link delete by name", linkMsg(unix.RTM_DELLINK, nlDel, 0, 0, 0).Attr(unix.IFLA_IFNAME, nltest.CString("cali1")).Bytes(), refused(rIface, ReasonLinkByName, 0)},
		{"link delete of another interface", linkMsg(unix.RTM_DELLINK, nlDel, 2, 0, 0).Bytes(), passed(1)},
		{"address removal on a protected interface", nltest.NewMsg(unix.RTM_DELADDR, nlDel, 1, 0, nltest.Ifaddrmsg(inet, 24, 0, caliIndex)).Attr(unix.IFA_LOCAL, nltest.IP("10.0.0.1")).Bytes(), refused(rIface, ReasonProtected, 0)},
		// malformed
		{"truncated message", protectedDel[:20], refused(NoRule, ReasonBadLen, 0)},
		{"nlmsg_len past the skb", delRoute(inet, 24, "10.244.1.0", tmain).BytesWithLen(200), refused(NoRule, ReasonBadLen, 0)},
		{"shorter than rtmsg", nltest.NewMsg(unix.RTM_DELROUTE, nlDel, 1, 0, []byte{inet, 24}).Bytes(), refused(NoRule, ReasonShort, 0)},
		{"attribute length below 4", delRoute(inet, 24, "172.16.0.0", tmain).Raw(2, 0, 1, 0).Bytes(), refused(NoRule, ReasonBadAttr, 0)},
		{"attribute past the message", delRoute(inet, 24, "172.16.0.0", tmain).Raw(40, 0, 1, 0).Bytes(), refused(NoRule, ReasonBadAttr, 0)},
		{"bad length of a message no one judges", nltest.NewMsg(unix.RTM_GETROUTE, nlDel, 1, 0, nil).BytesWithLen(900), passed(0)},
		{"unknown attributes before RTA_DST", delRoute(inet, 24, "", tmain).UnknownAttrs(3, 12).Attr(unix.RTA_DST, nltest.IP("10.244.1.0")).Bytes(), refused(rPrefix4, ReasonProtected, 0)},
		{"over 512 bytes and 32 attributes, RTA_DST last", delRoute(inet, 24, "", tmain).UnknownAttrs(60, 12).Attr(unix.RTA_DST, nltest.IP("10.244.1.0")).Bytes(), refused(rPrefix4, ReasonProtected, 0)},
		{"over 512 bytes, harmless", delRoute(inet, 24, "", tmain).UnknownAttrs(60, 12).Attr(unix.RTA_DST, nltest.IP("10.245.1.0")).Bytes(), passed(1)},
		// batches
		{"batch of 1", batch(1, protectedDel), refused(rPrefix4, ReasonProtected, 0)},
		{"batch of 64", batch(64, protectedDel), refused(rPrefix4, ReasonProtected, 63)},
		{"batch of 65", batch(65, protectedDel), refused(rPrefix4, ReasonProtected, 64)},
		{"batch of 1000", batch(1000, protectedDel), refused(rPrefix4, ReasonProtected, 999)},
		{"batch of 1000, harmless", batch(1000, delRoute(inet, 24, "10.245.1.0", tmain).Bytes()), passed(1000)},
		{"batch with a truncated protected message last", batch(65, protectedDel[:30]), refused(NoRule, ReasonBadLen, 64)},
	}
}

func TestMatcher(t *testing.T) {
	h := loadHarness(t)
	p := testPolicy()
	applyTestFacts(t, h.maps, p)
	facts := h.maps.Facts()
	for _, tc := range matcherCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := h.run(t, testNetns, tc.msgs)
			want := tc.want
			want.Refused = tc.want.Refused
			if got.Refused != want.Refused || got.Rule != want.Rule || got.Reason != want.Reason ||
				got.MsgIndex != want.MsgIndex || got.Msgs != want.Msgs {
				t.Errorf("BPF decided %+v, want %+v", got, want)
			}
			if got.Generation != facts.Policy.Generation {
				t.Errorf("judged by generation %d, want %d", got.Generation, facts.Policy.Generation)
			}
			if ref := Judge(&facts, testNetns, false, tc.msgs); ref != want {
				t.Errorf("reference decided %+v, want %+v", ref, want)
			}
			// another namespace is not enforced
			if got := h.run(t, otherNetns, tc.msgs); got.Refused || got.Msgs != 0 {
				t.Errorf("in another namespace: %+v, want a pass without a walk", got)
			}
		})
	}
}

// selfComm is the test binary's command name, as BPF reads it.
func selfComm(tb testing.TB) string {
	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

func TestAllowedActor(t *testing.T) {
	h := loadHarness(t)
	p := testPolicy()
	msgs := batch(65, delRoute(inet, 24, "10.244.1.0", tmain).Bytes())
	allow := []struct {
		name string
		set  func(*policy.Policy) error
	}{
		{"comm", func(p *policy.Policy) error {
			p.Allow = []policy.Allow{{Comm: selfComm(t)}}
			return nil
		}},
		{"cgroup", func(p *policy.Policy) error {
			p.Allow = nil
			id, err := selfCgroupID()
			if err != nil {
				return err
			}
			return h.maps.SetAllowedCgroups([]uint64{id})
		}},
		{"exe", func(p *policy.Policy) error {
			p.Allow = nil
			if err := h.maps.SetAllowedCgroups(nil); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Stat("/proc/self/exe", &st); err != nil {
				return err
			}
			return h.maps.SetAllowedExes([]ExeID{{Dev: st.Dev, Ino: st.Ino}})
		}},
	}
	for _, a := range allow {
		t.Run(a.name, func(t *testing.T) {
			if err := a.set(p); err != nil {
				t.Fatal(err)
			}
			applyTestFacts(t, h.maps, p)
			if got := h.run(t, testNetns, msgs); got.Refused || got.Msgs != 65 {
				t.Fatalf("allowed by %s: %+v, want a pass at message 65", a.name, got)
			}
		})
	}
	// and nothing allowed: refused again
	p.Allow = nil
	if err := h.maps.SetAllowedExes(nil); err != nil {
		t.Fatal(err)
	}
	applyTestFacts(t, h.maps, p)
	if got := h.run(t, testNetns, msgs); !got.Refused {
		t.Fatalf("nothing allowed: %+v, want refused", got)
	}
}

// TestVerdictRecord reads the ring after a refusal: the event and its
// enforcement, decoded as Run emits them.
func TestVerdictRecord(t *testing.T) {
	h := loadHarness(t)
	p := testPolicy()
	applyTestFacts(t, h.maps, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *event.Event, 4)
	done := make(chan error, 1)
	go func() {
		done <- runRing(ctx, h.objs.Events, Names(ruleNames(p)), func(ev *event.Event) { got <- ev }, t2log{t})
	}()
	msg := delRoute(inet, 24, "10.244.1.0", tmain).Attr(unix.RTA_OIF, nltest.U32(3)).Bytes()
	if r := h.run(t, testNetns, batch(3, msg)); !r.Refused {
		t.Fatalf("not refused: %+v", r)
	}
	bad := delRoute(inet, 24, "10.244.1.0", tmain).BytesWithLen(300)
	h.run(t, testNetns, bad)
	for i, want := range []event.Enforcement{
		{Verdict: event.VerdictBlocked, Rule: "protect[0]"},
		{Verdict: event.VerdictBlocked, Reason: "fail closed: nlmsg_len below the header or past the request"},
	} {
		var ev *event.Event
		select {
		case ev = <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("verdict %d not read", i)
		}
		if ev.Enforcement != want {
			t.Errorf("verdict %d: enforcement %+v, want %+v", i, ev.Enforcement, want)
		}
		if ev.Netns != testNetns || ev.Origin != event.OriginNetlink {
			t.Errorf("verdict %d: netns %d origin %v", i, ev.Netns, ev.Origin)
		}
		if ev.Actor.Tgid != uint32(os.Getpid()) || ev.Actor.Comm.String() != selfComm(t) {
			t.Errorf("verdict %d: actor tgid %d comm %q, want this process", i, ev.Actor.Tgid, ev.Actor.Comm.String())
		}
		if i == 0 && (ev.Op != event.OpDelete || ev.Object != event.ObjectRoute || ev.Dst != netip.MustParsePrefix("10.244.1.0/24") || ev.Table != tmain) {
			t.Errorf("verdict 0: %v %v dst %v table %d", ev.Op, ev.Object, ev.Dst, ev.Table)
		}
	}
	st, err := readStats(h.objs.Stats)
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocked != 2 || st.FailClosed != 1 || st.Lost != 0 || st.Checked != 2 {
		t.Errorf("stats %+v, want 2 checked, 2 blocked, 1 fail-closed", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type t2log struct{ t testing.TB }

func (l t2log) Warn(msg string, args ...any) { l.t.Errorf("%s %v", msg, args) }
