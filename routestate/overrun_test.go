package routestate

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

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
