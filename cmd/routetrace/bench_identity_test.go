package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// The bench's identity check must see what a count cannot: a deletion
// reported twice and another never, one blamed on the wrong process, a
// failure reported for a success, a flush count standing for routes.
func TestIdentityCheck(t *testing.T) {
	const netns = 4026532000
	id := newIdentity(8, netns)
	del := func(i int, pid uint32, comm string) *event.Event {
		ev := &event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet, Netns: netns,
			Dst: netip.PrefixFrom(netip.AddrFrom4(benchRoute(i)), 24), Table: 254}
		ev.Actor.Tgid, ev.Actor.Pid = pid, pid
		ev.Actor.Comm.Set(comm)
		return ev
	}
	for i := range 8 {
		switch i {
		case 1: // missing
		case 2: // reported twice
			id.observe(del(i, 100, "ip"))
			id.observe(del(i, 100, "ip"))
		case 3: // wrong pid
			id.observe(del(i, 101, "ip"))
		case 4: // wrong comm
			id.observe(del(i, 100, "bird"))
		case 5: // unknown actor
			id.observe(del(i, 0, ""))
		default:
			id.observe(del(i, 100, "ip"))
		}
	}
	failed := del(1, 100, "ip")
	failed.Errno = 3
	id.observe(failed)
	id.observe(del(9, 100, "ip")) // not one of the 8
	other := del(0, 100, "ip")
	other.Netns = netns + 1 // another namespace: not the bench's business
	id.observe(other)
	id.observe(&event.Event{Op: event.OpFlush, Object: event.ObjectRoute, Netns: netns, Table: 254, Count: 3,
		Origin: event.OriginKernel, Actor: event.Actor{Kernel: true}})
	add := del(1, 100, "ip")
	add.Op = event.OpAdd
	id.observe(add)

	got, examples := id.check([]uint32{100}, "ip")
	want := identityCounts{Correct: 3, Missing: 1, Duplicated: 1, WrongActor: 3, Failed: 1, Unexpected: 2}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	wantExamples := []string{
		"10.0.1.0/24 never reported",
		"10.0.2.0/24 reported 2 times",
		"10.0.3.0/24 deleted by ip[100], reported as by ip[101]",
		"10.0.4.0/24 deleted by ip[100], reported as by bird[100]",
		"10.0.5.0/24 deleted by ip[100], reported as by unknown[0]",
		"10.0.1.0/24 reported as failed with ESRCH by ip[100]",
		"10.0.9.0/24 deleted by ip[100]: not one of the bench's routes",
		"a flush record of 3 routes in table 254 (routes not reported one by one)",
	}
	if !slices.Equal(examples, wantExamples) {
		t.Errorf("examples:\n got  %q\n want %q", examples, wantExamples)
	}
	if id.adds.Load() != 1 || id.deletes.Load() != 8 || id.events.Load() != 13 {
		t.Errorf("adds %d, deletes %d, events %d; want 1, 8, 13", id.adds.Load(), id.deletes.Load(), id.events.Load())
	}

	id.reset()
	for i := range 8 {
		id.observe(del(i, 200, "routetrace"))
	}
	if got, ex := id.check([]uint32{200, 201}, "routetrace"); got != (identityCounts{Correct: 8}) || len(ex) != 0 {
		t.Errorf("after reset: %+v %q; want 8 correct", got, ex)
	}
}

func TestRouteIndex(t *testing.T) {
	for _, i := range []int{0, 1, 255, 256, 65535, 65536, 999999} {
		got, ok := routeIndex(netip.PrefixFrom(netip.AddrFrom4(benchRoute(i)), 24), 1000000)
		if !ok || got != i {
			t.Errorf("routeIndex(benchRoute(%d)) = %d, %v", i, got, ok)
		}
	}
	for _, p := range []string{"10.0.0.0/16", "10.0.0.1/24", "9.255.255.0/24", "10.3.232.0/24", "2001:db8::/24"} {
		if i, ok := routeIndex(netip.MustParsePrefix(p), 1000); ok {
			t.Errorf("routeIndex(%s) = %d, want none", p, i)
		}
	}
}
