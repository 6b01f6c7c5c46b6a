package tracer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/testnet"
)

// Under TCG a tracer of the FIB tiers takes seconds to start and stop (on
// arm64 6.1 about 12 s per kprobe test, nearly all of it), and vmtest runs
// every hook test under both tiers on every kernel. So where a FIB tier is
// forced, the hook tests share one tracer that follows every namespace:
// each test takes the events of its own namespace, between two ring
// flushes. This is exact there: those tiers report each change from its
// ring record, written during the change's own syscall (or the kernel's
// work), with no join to wait for. Tier 3 joins requests with
// notifications, so its tests keep a tracer each.

// sharedTracer is the tracer the hook tests share, and its attach mode.
type sharedTracer struct {
	mode    string
	s       *session
	flushed atomic.Uint32 // the last ring flush Run has handled
}

var (
	sharedMu sync.Mutex
	shared   *sharedTracer
)

// hookSession is startTracer for a test that reads only its namespaces'
// events (with in): under a forced FIB tier, a view of the shared tracer.
func hookSession(t *testing.T, namespaces ...*testnet.Netns) *session {
	t.Helper()
	return hookSessionOpts(t, testOptions(namespaces))
}

// hookSessionOpts is startTracerOpts for such a test. Only the attach mode
// matters to a view: the shared tracer follows every namespace, and the
// other options (Capture, Ioctl) configure tier 3.
func hookSessionOpts(t *testing.T, opts Options) *session {
	t.Helper()
	mode := opts.Attach
	if mode != "fentry" && mode != "kprobe" {
		return startTracerOpts(t, opts)
	}
	testnet.RequireRoot(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil && shared.mode != mode {
		closeSharedLocked()
	}
	if shared == nil {
		sh := &sharedTracer{mode: mode}
		opts := Options{Attach: mode, Capture: captureMode(), TraceSelf: true}
		s, err := runSession(opts, func(n uint32) { sh.flushed.Store(n) })
		if err != nil {
			failStart(t, mode, err)
		}
		sh.s = s
		shared = sh
	}
	// What was done before this test (its namespace's set-up included)
	// is handled before the view starts.
	shared.sync(t)
	s := shared.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return &session{t: t, tr: s.tr, view: shared, from: len(s.events), procFrom: len(s.procs)}
}

// sync returns once Run has handled every record written before it was
// called.
func (sh *sharedTracer) sync(t *testing.T) {
	t.Helper()
	n := uint32(sh.s.tr.wakeRing())
	deadline := time.Now().Add(time.Minute)
	for int32(sh.flushed.Load()-n) < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the shared tracer did not read its ring buffer to flush %d in a minute (at %d)", n, sh.flushed.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// endView takes the view's events and process records from the shared
// session: what Run handled between the view's start and now.
func (s *session) endView() {
	sh := s.view
	s.view = nil
	sh.sync(s.t)
	all := sh.s
	all.mu.Lock()
	events := append(s.events[:0], all.events[s.from:]...)
	var procs []procSeen
	for _, p := range all.procs[s.procFrom:] {
		procs = append(procs, procSeen{p.p, p.events - s.from})
	}
	all.mu.Unlock()
	s.mu.Lock()
	s.events, s.procs = events, procs
	s.mu.Unlock()
}

// closeShared stops the shared tracer, if one runs: before a test starts
// a tracer of its own, so that the hooks do not run twice.
func closeShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	closeSharedLocked()
}

func closeSharedLocked() {
	if shared == nil {
		return
	}
	s := shared.s
	s.cancel()
	<-s.done
	s.tr.Close()
	shared = nil
}
