package tier3

import (
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
)

// A listener whose socket fails (here: its descriptor made /dev/null, so
// every receive fails with ENOTSOCK) is reopened, the gap counted, and the
// new one hears the namespace. Before, the listener's reader returned on
// the first such error and the namespace went unheard without a word.
func TestListenerReopenedAfterFailure(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	var stats Stats
	ls := NewListeners(slog.Default(), &stats, false)
	defer ls.Close()
	ino, err := ls.Add(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ls.TakeNews() {
		if n.Kind != NoteListening || n.Ev.Netns != ino {
			t.Fatalf("news %+v, want the listener of netns %d", n, ino)
		}
	}
	ls.mu.Lock()
	fd := ls.byNs[ino].l.Fd()
	ls.mu.Unlock()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if err := unix.Dup2(int(devnull.Fd()), fd); err != nil {
		t.Fatal(err)
	}

	notes := make(chan Note, 64)
	done := make(chan struct{})
	go func() { defer close(done); ls.Run(notes) }()
	defer func() { ls.Stop(); <-done }()

	deadline := time.After(5 * time.Second)
	for reopened := false; !reopened; {
		select {
		case n := <-notes:
			reopened = n.Kind == NoteListening && n.Ev.Netns == ino
		case <-deadline:
			t.Fatalf("no listener reopened in netns %d within 5 s; gaps %d", ino, stats.ListenerGaps.Load())
		}
	}
	if g := stats.ListenerGaps.Load(); g != 1 {
		t.Errorf("listener gaps %d, want 1", g)
	}
	// The new listener hears the namespace.
	if out, err := exec.Command("ip", "-n", ns.Name, "route", "add", "198.51.100.0/24", "dev", "v0").CombinedOutput(); err != nil {
		t.Fatalf("ip route add: %v: %s", err, out)
	}
	for {
		select {
		case n := <-notes:
			if n.Kind == NoteChange && n.Ev.Object == event.ObjectRoute && n.Ev.Dst.String() == "198.51.100.0/24" {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the reopened listener did not hear the route added after it")
		}
	}
}

// Sync on idle listeners reads every socket at once: a change notified
// before the call comes before NoteSynced, without waiting for IdlePoll.
func TestListenersSyncReadsWhatCameBefore(t *testing.T) {
	ls, notes := idleListeners(t, false)
	ls.Sync()
	sawRoute := false
	for {
		select {
		case n := <-notes:
			if n.Kind == NoteChange && n.Ev.Dst.String() == "198.51.100.0/24" {
				sawRoute = true
			}
			if n.Kind == NoteSynced {
				if !sawRoute {
					t.Fatal("NoteSynced came before the route added before Sync")
				}
				return
			}
		case <-time.After(IdlePoll * 3 / 4):
			// An idle Run wakes at IdlePoll at the latest: Sync must be sooner.
			t.Fatalf("no NoteSynced within %v of Sync", IdlePoll*3/4)
		}
	}
}

// TestListenersWakeOnNotification: with WakeOnNotification an idle Run
// reads a notification within milliseconds, not at its next idle poll.
func TestListenersWakeOnNotification(t *testing.T) {
	_, notes := idleListeners(t, true)
	added := time.Now()
	for {
		select {
		case n := <-notes:
			if n.Kind == NoteChange && n.Ev.Dst.String() == "198.51.100.0/24" {
				if d := n.Ev.Time.Sub(added); d > 50*time.Millisecond {
					t.Errorf("notification read %v after the change, want within 50 ms", d)
				}
				return
			}
		case <-time.After(IdlePoll):
			t.Fatal("no notification within IdlePoll")
		}
	}
}

// idleListeners runs listeners (waking on notifications, or polling) on a
// new namespace until the test ends, waits until Run is idle, adds the
// route 198.51.100.0/24 there and returns.
func idleListeners(t *testing.T, wake bool) (*Listeners, <-chan Note) {
	t.Helper()
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	var stats Stats
	ls := NewListeners(slog.Default(), &stats, false)
	t.Cleanup(ls.Close)
	if wake {
		if err := ls.WakeOnNotification(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ls.Add(ns.Path); err != nil {
		t.Fatal(err)
	}
	ls.TakeNews()
	notes := make(chan Note, 64)
	done := make(chan struct{})
	go func() { defer close(done); ls.Run(notes) }()
	t.Cleanup(func() { ls.Stop(); <-done }) // before Close: cleanups run last first

	time.Sleep(IdleAfter + BusyPoll*4) // Run is in its idle sleep (or poll) now
	if out, err := exec.Command("ip", "-n", ns.Name, "route", "add", "198.51.100.0/24", "dev", "v0").CombinedOutput(); err != nil {
		t.Fatalf("ip route add: %v: %s", err, out)
	}
	return ls, notes
}
