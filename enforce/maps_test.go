package enforce

import (
	"io"
	"log/slog"
	"testing"

	"github.com/routetrace/routetrace/internal/testnet"
)

// Apply's wait for the programs still judging with the old set is an
// update of an array of maps, which the kernel returns from only after an
// RCU grace period, whatever the number of CPUs (membarrier, used before,
// skips it on one CPU: TestLSMEnforce's policy flips let a protected delete
// through on a one-CPU 7.2 guest). Here: the wait works on this kernel, and
// its maps are made once and freed.
func TestWaitGrace(t *testing.T) {
	testnet.RequireRoot(t)
	m := &Maps{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i := range 3 {
		if err := m.waitGrace(); err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
	}
	grace := m.grace
	if grace == nil || m.graceInner == nil {
		t.Fatal("no grace-period map after a wait")
	}
	if err := m.waitGrace(); err != nil || m.grace != grace {
		t.Fatalf("another wait: %v, map %v (want the same %v)", err, m.grace, grace)
	}
	m.close()
	if m.grace != nil || m.graceInner != nil {
		t.Fatal("grace-period maps kept after close")
	}
}
