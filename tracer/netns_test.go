package tracer

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
	"github.com/routetrace/routetrace/rtnl"
)

// By default every network namespace on the node is traced, including
// those created while tracing (pods), and the ones destroyed are let go.
// Before, tier 3 heard only its own namespace and those named with --netns.
func TestFollowsEveryNamespace(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	n, width := 200, 16
	if os.Getenv("ROUTETRACE_VMTEST") != "" {
		// Under QEMU's emulation 200 take four minutes a tier; the host
		// run (tier 3, where following matters most) keeps all 200.
		// The deletions go one at a time there: 16 ip processes on one
		// emulated CPU, beside another guest, starved the tracer's ring
		// reader past tier 3's 1 s wait for a request (ConfirmDelay),
		// and a delete came out without its actor (7.2, 1 run in 6).
		n, width = 20, 1
	}
	s := startTracerAll(t)
	names := make([]string, n)
	inodes := make([]uint32, n)
	parallel(t, n, func(i int) error {
		names[i] = fmt.Sprintf("rt-all-%d-%d", os.Getpid(), i)
		script := strings.Join([]string{
			"ip netns add " + names[i],
			"ip -n " + names[i] + " link add v0 type veth peer name v1",
			"ip -n " + names[i] + " link set v0 up",
			"ip -n " + names[i] + " addr add 192.0.2.1/24 dev v0",
			"ip -n " + names[i] + " route add 10.77.0.0/24 via 192.0.2.2",
		}, " && ")
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", script, err, out)
		}
		var err error
		inodes[i], err = rtnl.NetnsInode("/run/netns/" + names[i])
		return err
	})
	t.Cleanup(func() {
		for _, name := range names {
			exec.Command("ip", "netns", "del", name).Run()
		}
	})
	waitFor(t, "every new namespace followed", func() bool {
		for _, ino := range inodes {
			if !s.tr.Follows(ino) {
				return false
			}
		}
		return true
	})
	pids := make([]uint32, n)
	parallelN(t, n, width, func(i int) error {
		cmd := exec.Command("ip", "-n", names[i], "route", "del", "10.77.0.0/24")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("route del in %s: %v: %s", names[i], err, out)
		}
		pids[i] = uint32(cmd.Process.Pid)
		return nil
	})
	parallel(t, n, func(i int) error {
		return exec.Command("ip", "netns", "del", names[i]).Run()
	})
	waitFor(t, "every destroyed namespace let go", func() bool {
		for _, ino := range inodes {
			if s.tr.Follows(ino) {
				return false
			}
		}
		return true
	})
	evs := s.stop()

	byNetns := map[uint32]*event.Event{}
	for i := range evs {
		ev := &evs[i]
		if ev.Dst == netip.MustParsePrefix("10.77.0.0/24") && ev.Op == event.OpDelete && ev.Origin == event.OriginNetlink {
			if byNetns[ev.Netns] != nil {
				t.Errorf("netns %d: the delete was reported twice", ev.Netns)
			}
			byNetns[ev.Netns] = ev
		}
	}
	for i, ino := range inodes {
		ev := byNetns[ino]
		if ev == nil {
			t.Errorf("%s (netns %d): the route delete by ip[%d] was not reported", names[i], ino, pids[i])
			continue
		}
		if ev.Actor.Tgid != pids[i] || ev.Actor.Comm.String() != "ip" || ev.Gateway.String() != "192.0.2.2" {
			t.Errorf("%s: got %s, want the delete via 192.0.2.2 by ip[%d]", names[i], got(ev), pids[i])
		}
	}
	if l := s.tr.Losses(); l.Overruns != 0 || l.ListenerGaps != 0 || l.ReadErrors != 0 {
		t.Errorf("losses %+v, want no overrun, gap or read error", l)
	}
}

// startTracerAll starts a tracer that follows every namespace.
func startTracerAll(t *testing.T) *session {
	t.Helper()
	return startTracerOpts(t, Options{Attach: attachMode(), Capture: captureMode(), TraceSelf: true})
}

func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	parallelN(t, n, 16, f)
}

// parallelN runs f(0..n-1), width at a time.
func parallelN(t *testing.T, n, width int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, width)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
