package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/policy"
)

// judgeStage applies a policy to every change between enrichment and the
// journal: trace --policy (audit) and enforce (audit, block, repair). It
// runs on the tracer's goroutine; the policy is swapped whole on reload, so
// a change is judged by one policy, never half of two.
type judgeStage struct {
	path   string
	mode   policy.Mode
	policy atomic.Pointer[policy.Policy]

	// repair puts back what a would-block change removed (repair mode);
	// it sets the verdict to repaired, or says in the reason why not.
	repair func(ev *event.Event)
	// reloaded is told of every new policy before the judge uses it
	// (block mode updates the kernel's maps); an error keeps the old
	// policy in force everywhere.
	reloaded func(p *policy.Policy) error
	// enricher is the run's enricher once it exists (nil with
	// --enrich=false): block mode asks it which cgroups are an allowed
	// pod's.
	enricher atomic.Pointer[enrich.Enricher]
	// lowLatency asks the tracer to read a deletion at once (repair).
	lowLatency bool
	// kernelSummary adds block mode's own counters to the summary: what
	// the kernel judged and refused, and the refusals its ring lost.
	kernelSummary func() string
	// closers run after the tracer has stopped, last first.
	closers []func()
	// start runs once the tracer is attached, with the pipeline's entry
	// (block mode starts reading the kernel's refusals into it).
	start func(ctx context.Context, emit func(*event.Event)) error

	// namespaces the policy applies to (inodes); nil: every namespace
	// traced. enforce applies it to its own namespace or --netns's.
	namespaces map[uint32]bool
	nsPaths    []string // the same, as paths, for the enforcer and repair

	verdicts [4]atomic.Uint64 // by event.Verdict
	mu       sync.Mutex
	missing  []time.Duration // repaired: how long each was gone, for the summary
}

func newJudgeStage(p *policy.Policy, path string, mode policy.Mode) *judgeStage {
	j := &judgeStage{path: path, mode: mode}
	j.policy.Store(p)
	return j
}

// Judge sets ev.Enforcement. A change that comes judged (the enforcer's
// blocked requests) is only counted.
func (j *judgeStage) Judge(ev *event.Event) {
	if ev.Enforcement.Verdict == event.VerdictNone {
		j.judge(ev)
	}
	v := ev.Enforcement.Verdict
	if int(v) < len(j.verdicts) {
		j.verdicts[v].Add(1)
	}
	if v == event.VerdictRepaired {
		j.mu.Lock()
		j.missing = append(j.missing, ev.Enforcement.Missing)
		j.mu.Unlock()
	}
}

func (j *judgeStage) judge(ev *event.Event) {
	if j.namespaces != nil && !j.namespaces[ev.Netns] {
		return
	}
	p := j.policy.Load()
	if !p.Apply(ev, event.VerdictWouldBlock).Enforced() {
		return
	}
	switch {
	case j.mode == policy.ModeRepair && j.repair != nil:
		j.repair(ev)
	case j.mode == policy.ModeBlock && ev.Origin == event.OriginKernel:
		ev.Enforcement.Reason = reasonKernelRemoval
	case j.mode == policy.ModeBlock:
		// The LSM program judges requests; a change it let through was
		// not protected when it was asked for (a route the enforcer
		// learnt of a moment later), or not readable as one.
		ev.Enforcement.Reason = reasonNotRefused
	}
}

const (
	reasonKernelRemoval = "a kernel-internal removal: it cannot be refused, only its cause (see README#enforce)"
	reasonNotRefused    = "not refused in the kernel: the request did not name protected state when it was made"
)

// close runs the closers, last first.
func (j *judgeStage) close() {
	for i := len(j.closers) - 1; i >= 0; i-- {
		j.closers[i]()
	}
}

// summary is the exit summary's enforce line.
func (j *judgeStage) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "enforce: mode %s, policy %s: %d blocked, %d would-block, %d repaired", j.mode, j.path,
		j.verdicts[event.VerdictBlocked].Load(), j.verdicts[event.VerdictWouldBlock].Load(), j.verdicts[event.VerdictRepaired].Load())
	if j.kernelSummary != nil {
		b.WriteString(j.kernelSummary())
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if n := len(j.missing); n > 0 {
		m := append([]time.Duration(nil), j.missing...)
		sort.Slice(m, func(a, b int) bool { return m[a] < m[b] })
		fmt.Fprintf(&b, " (missing for median %s, worst %s)", m[n/2].Round(10*time.Microsecond), m[n-1].Round(10*time.Microsecond))
	}
	return b.String()
}

// loadPolicy reads a policy file, or says how to get one.
func loadPolicy(path string) (*policy.Policy, error) {
	if path == "auto" {
		return nil, errors.New("--policy auto only prints a policy built from this node: " +
			"`routetrace enforce --policy auto --dry-run > policy.yaml`, review it, then --policy policy.yaml")
	}
	p, err := policy.Load(path)
	if err != nil {
		return nil, fmt.Errorf("policy not loaded, nothing enforced:\n%w", err)
	}
	return p, nil
}

// watch reloads the policy on SIGHUP and when its file changes (checked
// every second: a ConfigMap update replaces the file by a symlink swap,
// which a size and mtime check of the path followed sees). A file that
// fails to load leaves the policy in force and says so.
func (j *judgeStage) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := fileStamp(j.path)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			last = fileStamp(j.path)
			j.reload("SIGHUP")
		case <-tick.C:
			if s := fileStamp(j.path); s != last {
				last = s
				j.reload("file changed")
			}
		}
	}
}

// reload loads the file again and puts it in force, or keeps the old one.
func (j *judgeStage) reload(why string) {
	p, err := policy.Load(j.path)
	if err == nil && j.reloaded != nil {
		err = j.reloaded(p)
	}
	if err != nil {
		slog.Error("policy reload failed: the previous policy stays in force", "trigger", why, "err", err)
		return
	}
	if p.Mode != policy.ModeAuto && p.Mode != j.mode {
		slog.Warn("policy reloaded, but a new mode needs a restart", "running", j.mode, "file", p.Mode)
	}
	j.policy.Store(p)
	slog.Info("policy reloaded", "trigger", why, "file", j.path, "protect", len(p.Protect), "allow", len(p.Allow))
}

type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func fileStamp(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	s := stamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}
