package repair

import (
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/routestate"
)

// TestBackoffDoubles: each new round of deletions backs off twice as long
// as the last, up to MaxBackoff; a quiet spell of MaxBackoff starts over.
func TestBackoffDoubles(t *testing.T) {
	r := newRepairer(Options{MaxRepairs: 2, Window: 10 * time.Second, Backoff: 8 * time.Second, MaxBackoff: 20 * time.Second})
	now := time.Unix(1e9, 0)
	r.clock = func() time.Time { return now }
	ev := &event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Actor: event.Actor{Tgid: 123}}
	ev.Actor.Comm.Set("systemd-network")
	k := routestate.KeyOf(ev)

	// round sends deletions 1 s apart until one is refused, and returns
	// how many were admitted and the refusal.
	round := func() (int, string) {
		for n := 0; ; n++ {
			if _, reason := r.admit(k, ev); reason != "" {
				return n, reason
			}
			now = now.Add(time.Second)
		}
	}
	for i, want := range []string{
		"backing off 8s: deleted 3 times in 10s by systemd-network (pid 123)",
		"backing off 16s: deleted 3 times in 10s by systemd-network (pid 123)",
		"backing off 20s: deleted 3 times in 10s by systemd-network (pid 123)", // MaxBackoff
	} {
		n, reason := round()
		if n != 2 || reason != want {
			t.Errorf("round %d: %d repairs then %q, want 2 then %q", i+1, n, reason, want)
		}
		now = now.Add(time.Second)
		if _, reason := r.admit(k, ev); reason != "not repaired: backing off for "+(r.hist[k].until.Sub(now)).String()+" more" {
			t.Errorf("round %d, while backing off: %q", i+1, reason)
		}
		now = r.hist[k].until
	}
	now = now.Add(21 * time.Second) // quiet longer than MaxBackoff
	if n, reason := round(); n != 2 || reason != "backing off 8s: deleted 3 times in 10s by systemd-network (pid 123)" {
		t.Errorf("after a quiet spell: %d then %q, want the first round's backoff", n, reason)
	}
}
