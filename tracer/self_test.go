package tracer

import (
	"testing"

	"github.com/routetrace/routetrace/event"
)

// TestOwnChangesNotReported: the FIB hooks (tiers 1-2) report changes by
// every task; the tracer's own (repair's) are dropped in Go unless
// TraceSelf, as tier 3's capture drops them in BPF.
func TestOwnChangesNotReported(t *testing.T) {
	for _, c := range []struct {
		self, tgid uint32
		kernel     bool
		reported   bool
	}{
		{self: 42, tgid: 42, reported: false},
		{self: 42, tgid: 43, reported: true},
		{self: 42, tgid: 42, kernel: true, reported: true}, // the kernel's own removal, in a kernel thread
		{self: 0, tgid: 42, reported: true},                // TraceSelf
	} {
		tr := &Tracer{self: c.self, clock: newClock()}
		r := &record{Kind: kindChange, Op: uint8(event.OpAdd), Object: uint8(event.ObjectRoute), Family: event.FamilyInet, Tgid: c.tgid}
		if c.kernel {
			r.Origin, r.Flags = uint8(event.OriginKernel), flagKthread
		}
		var ev event.Event
		reported := false
		tr.handleRecord(r, &ev, nil, func(*event.Event) { reported = true })
		if reported != c.reported {
			t.Errorf("self %d, change by tgid %d (kernel %v): reported %v, want %v", c.self, c.tgid, c.kernel, reported, c.reported)
		}
	}
}
