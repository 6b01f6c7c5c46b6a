package event

import (
	"net/netip"
	"testing"
)

func TestFilterMatch(t *testing.T) {
	var ip, networkd Actor
	ip.Comm.Set("ip")
	ip.Tgid = 4410
	networkd.Comm.Set("systemd-networkd")
	networkd.Tgid = 812

	route := Event{Op: OpDelete, Object: ObjectRoute, Family: FamilyInet, Table: 254,
		Dst: netip.MustParsePrefix("10.244.3.0/24"), Actor: networkd}
	rule := Event{Op: OpAdd, Object: ObjectRule, Family: FamilyInet6, Table: 100, Actor: ip}
	flushed := Event{Op: OpDelete, Object: ObjectRoute, Family: FamilyInet, Table: 254,
		Dst: netip.MustParsePrefix("10.244.7.0/24"), Origin: OriginKernel, Actor: Actor{Kernel: true},
		Cause: Cause{Valid: true, Object: ObjectLink, Actor: ip}}

	blocked := route
	blocked.Enforcement.Verdict = VerdictBlocked

	tests := []struct {
		name string
		f    Filter
		ev   *Event
		want bool
	}{
		{"empty matches all", Filter{}, &route, true},
		{"op", Filter{Ops: []Op{OpAdd}}, &route, false},
		{"op alternatives", Filter{Ops: []Op{OpAdd, OpDelete}}, &route, true},
		{"object", Filter{Objects: []Object{ObjectRule}}, &rule, true},
		{"family", Filter{Families: []uint8{FamilyInet}}, &rule, false},
		{"table", Filter{Tables: []uint32{254}}, &route, true},
		{"dst inside", Filter{Dst: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}, &route, true},
		{"dst equal", Filter{Dst: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")}}, &route, true},
		{"dst wider than filter", Filter{Dst: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/25")}}, &route, false},
		{"dst outside", Filter{Dst: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}, &route, false},
		{"dst on rule without dst", Filter{Dst: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, &rule, false},
		{"comm", Filter{Comms: []string{"systemd-networkd"}}, &route, true},
		{"comm other", Filter{Comms: []string{"ip"}}, &route, false},
		{"pid", Filter{Pids: []uint32{4410}}, &rule, true},
		{"kernel change matches its cause's pid", Filter{Pids: []uint32{4410}}, &flushed, true},
		{"kernel change matches its cause's comm", Filter{Comms: []string{"ip"}}, &flushed, true},
		{"verdict none", Filter{Verdicts: []Verdict{VerdictNone}}, &route, true},
		{"verdict blocked", Filter{Verdicts: []Verdict{VerdictBlocked}}, &route, false},
		{"verdict blocked matches", Filter{Verdicts: []Verdict{VerdictRepaired, VerdictBlocked}}, &blocked, true},
		{"all fields", Filter{Ops: []Op{OpDelete}, Objects: []Object{ObjectRoute}, Tables: []uint32{254}, Comms: []string{"systemd-networkd"}}, &route, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(tt.ev); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilterMatchAllocs(t *testing.T) {
	f := Filter{Comms: []string{"ip"}, Dst: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	ev := Event{Dst: netip.MustParsePrefix("10.1.0.0/16")}
	ev.Actor.Comm.Set("ip")
	if n := testing.AllocsPerRun(100, func() { f.Match(&ev) }); n != 0 {
		t.Fatalf("Match allocates %v times per call", n)
	}
}
