package routestate

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
)

// TestOverrunResync: notifications lost to a full socket buffer are made
// up for by a dump, even when the overrun comes during a dump.
func TestOverrunResync(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	defer func(n int) { subRcvbuf = n }(subRcvbuf)
	subRcvbuf = 4096 // the kernel's minimum: a few notifications
	s := New(Options{})
	defer s.Close()
	ino, err := s.Follow(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	base := s.Len(ino)
	const n = 5000
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "route add 10.%d.%d.0/24 dev v0 table 100\n", i/250, i%250)
	}
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Len(ino) != base+n {
		if time.Now().After(deadline) {
			t.Fatalf("%d objects kept, want %d", s.Len(ino), base+n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestResync: a Keep that changed applies to what is already there once
// Resync has dumped again.
func TestResync(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("route", "add", "198.51.100.0/24", "dev", "v0", "table", "100")
	var keep atomic.Bool
	s := New(Options{Keep: func(*event.Event) bool { return keep.Load() }})
	defer s.Close()
	ino, err := s.Follow(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Len(ino); n != 0 {
		t.Fatalf("%d objects kept before, want 0", n)
	}
	keep.Store(true)
	s.Resync()
	k := Key{Netns: ino, Object: event.ObjectRoute, Family: unix.AF_INET, Table: 100, Dst: netip.MustParsePrefix("198.51.100.0/24")}
	waitState(t, s, k, Present)
	keep.Store(false)
	s.Resync()
	waitState(t, s, k, Unknown)
	// Still following: a notification after the resyncs is seen.
	keep.Store(true)
	ns.IP("route", "add", "198.51.100.0/25", "dev", "v0", "table", "100")
	k.Dst = netip.MustParsePrefix("198.51.100.0/25")
	waitState(t, s, k, Present)
}

func waitState(t *testing.T, s *Store, k Key, want State) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Lookup(k) != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v: state %v, want %v", k.Dst, s.Lookup(k), want)
		}
	}
}
