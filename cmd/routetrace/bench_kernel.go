package main

// The tracer's cost inside the kernel, measured apart from the timed rounds:
// --pin keeps the tracer's user-space work off the CPU that makes the
// changes, and --bpf-stats runs one more traced round with the kernel's BPF
// run-time statistics on (kernel.bpf_stats_enabled), so each program's runs
// and nanoseconds per run are read from the kernel itself.
//
// The per-program time is CPU work done synchronously in the task making
// the change; it scales with the CPU like the change itself does. So the
// number that carries from an emulated guest to real hardware is the ratio
// of the programs' time per deleted route to the time a deleted route takes
// with no tracer, not either time alone.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

// The CPUs --pin uses: the workload (ip and its changes, with the BPF
// programs they trigger) on one, the tracer's reading and decoding on the
// other.
const (
	workloadCPU = 0
	tracerCPU   = 1
)

// pinned is set by pinBench; ipCmd then starts its children on workloadCPU.
var pinned bool

// pinBench moves every thread of this process to tracerCPU. Threads the Go
// runtime starts later are cloned from these and inherit the mask; commands
// are started through onWorkloadCPU.
func pinBench() error {
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		return fmt.Errorf("--pin: reading this process's CPU affinity: %w", err)
	}
	if !online.IsSet(workloadCPU) || !online.IsSet(tracerCPU) {
		return fmt.Errorf("--pin needs CPUs %d and %d (the workload and the tracer); this process may use %d CPU(s)",
			workloadCPU, tracerCPU, online.Count())
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("--pin: listing this process's threads: %w", err)
	}
	var set unix.CPUSet
	set.Set(tracerCPU)
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		// A thread may exit between the listing and here.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("--pin: moving thread %d to CPU %d: %w", tid, tracerCPU, err)
		}
	}
	pinned = true
	slog.Info("bench pinned", "tracer_cpu", tracerCPU, "workload_cpu", workloadCPU)
	return nil
}

// onWorkloadCPU runs start, which starts a child process, from a thread
// moved to workloadCPU for the time: a child inherits the CPU mask of the
// thread that forks it. The thread gets the tracer's mask back before it
// returns to the Go scheduler's pool. Without --pin it just calls start.
func onWorkloadCPU(start func() error) error {
	if !pinned {
		return start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(workloadCPU)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("moving the starting thread to CPU %d: %w", workloadCPU, err)
	}
	err := start()
	set.Zero()
	set.Set(tracerCPU)
	if rerr := unix.SchedSetaffinity(0, &set); rerr != nil {
		return fmt.Errorf("moving the starting thread back to CPU %d: %w", tracerCPU, rerr)
	}
	return err
}

// kernelCost is what the extra traced round measured, per removal method.
type kernelCost struct {
	Pinned bool        `json:"pinned"`
	Phases []phaseCost `json:"phases"`
}

// phaseCost compares the BPF programs' time per deleted route with the
// time a deleted route takes without the tracer (the timed rounds' median).
type phaseCost struct {
	Name          string  `json:"name"`
	Deleted       int     `json:"deleted"`
	NoTracerNsPer float64 `json:"no_tracer_ns_per_change"`
	BPFNsPer      float64 `json:"bpf_ns_per_change"`
	Ratio         float64 `json:"bpf_ratio"` // BPFNsPer / NoTracerNsPer
	// The same round's wall time per deleted route, with the programs and
	// their statistics on, and the programs' share of it: both measured in
	// the same window, so a busy host (or emulation) skews them alike.
	TracedNsPer     float64    `json:"traced_ns_per_change"`
	Share           float64    `json:"bpf_share"` // BPFNsPer / TracedNsPer
	RecursionMisses uint64     `json:"recursion_misses"`
	Programs        []progCost `json:"programs"`
}

// progCost is one program's share of a phase, from its run_cnt and
// run_time_ns.
type progCost struct {
	Name     string  `json:"name"`
	Runs     uint64  `json:"runs"`
	NsPerRun float64 `json:"ns_per_run"`
	Misses   uint64  `json:"recursion_misses,omitempty"`
}

// measureKernelCost runs one traced round with BPF statistics on and
// returns the programs' cost per deleted route in each removal method, next
// to the no-tracer times per route of the timed rounds (batchOff, flushOff
// in seconds). It returns nil, nil when the kernel refuses the statistics.
func (b *benchNetns) measureKernelCost(attach string, batchOff, flushOff float64) (*kernelCost, error) {
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		slog.Warn("BPF run-time statistics refused; no per-program cost", "err", err)
		return nil, nil
	}
	defer stats.Close()

	slog.Info("bench round", "mode", "tracer, BPF statistics on")
	t, err := tracer.New(tracer.Options{Attach: attach, Capture: b.capture, Netns: []string{b.name}, Logger: slog.Default()})
	if err != nil {
		return nil, err
	}
	defer t.Close()
	progs, err := ownPrograms()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range progs {
			p.prog.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- t.Run(ctx, func(*event.Event) {}) }()
	defer func() { cancel(); <-done }()

	kc := &kernelCost{Pinned: pinned}
	for _, ph := range []struct {
		name string
		off  float64
		del  []string
	}{
		{"ip -batch del", batchOff, []string{"-n", b.name, "-batch", b.delFile}},
		{"ip route flush", flushOff, []string{"-n", b.name, "route", "flush", "proto", "static"}},
	} {
		if err := b.addRoutes(); err != nil {
			return nil, err
		}
		before, err := snapshot(progs)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if err := ipCmd(ph.del...); err != nil {
			return nil, err
		}
		traced := time.Since(start)
		after, err := snapshot(progs)
		if err != nil {
			return nil, err
		}
		kc.Phases = append(kc.Phases, phaseOf(ph.name, b.n, ph.off, traced, progs, before, after))
	}
	return kc, nil
}

type ownProgram struct {
	name string
	prog *ebpf.Program
}

// ownPrograms opens the BPF programs this process holds, found by the
// prog_id lines of its file descriptors: other processes' programs, on a
// shared host, are left out.
func ownPrograms() ([]ownProgram, error) {
	fds, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		return nil, fmt.Errorf("listing this process's file descriptors: %w", err)
	}
	seen := map[ebpf.ProgramID]bool{}
	var out []ownProgram
	for _, fd := range fds {
		raw, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		if err != nil {
			continue // closed since the listing, such as ReadDir's own
		}
		id, ok := fdinfoProgID(string(raw))
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return nil, fmt.Errorf("opening BPF program %d: %w", id, err)
		}
		info, err := p.Info()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("reading BPF program %d's info: %w", id, err)
		}
		out = append(out, ownProgram{name: info.Name, prog: p})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no BPF program among this process's file descriptors")
	}
	return out, nil
}

// fdinfoProgID finds "prog_id:\tN" in a /proc/PID/fdinfo/FD file.
func fdinfoProgID(fdinfo string) (ebpf.ProgramID, bool) {
	for line := range strings.Lines(fdinfo) {
		if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return ebpf.ProgramID(id), err == nil && id > 0
		}
	}
	return 0, false
}

func snapshot(progs []ownProgram) ([]ebpf.ProgramStats, error) {
	out := make([]ebpf.ProgramStats, len(progs))
	for i, p := range progs {
		s, err := p.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading the statistics of BPF program %s: %w", p.name, err)
		}
		out[i] = *s
	}
	return out, nil
}

// phaseOf turns two snapshots into a phase's cost. Programs that did not
// run are left out; the rest are listed by total time, largest first.
func phaseOf(name string, deleted int, offSeconds float64, traced time.Duration, progs []ownProgram, before, after []ebpf.ProgramStats) phaseCost {
	ph := phaseCost{Name: name, Deleted: deleted, NoTracerNsPer: offSeconds * 1e9 / float64(deleted),
		TracedNsPer: float64(traced.Nanoseconds()) / float64(deleted)}
	var total time.Duration
	type run struct {
		cost progCost
		took time.Duration
	}
	var runs []run
	for i, p := range progs {
		n := after[i].RunCount - before[i].RunCount
		took := after[i].Runtime - before[i].Runtime
		misses := after[i].RecursionMisses - before[i].RecursionMisses
		ph.RecursionMisses += misses
		if n == 0 && misses == 0 {
			continue
		}
		total += took
		c := progCost{Name: p.name, Runs: n, Misses: misses}
		if n > 0 {
			c.NsPerRun = float64(took.Nanoseconds()) / float64(n)
		}
		runs = append(runs, run{c, took})
	}
	slices.SortStableFunc(runs, func(a, b run) int { return int(b.took - a.took) })
	for _, r := range runs {
		ph.Programs = append(ph.Programs, r.cost)
	}
	ph.BPFNsPer = float64(total.Nanoseconds()) / float64(deleted)
	if ph.NoTracerNsPer > 0 {
		ph.Ratio = ph.BPFNsPer / ph.NoTracerNsPer
	}
	if ph.TracedNsPer > 0 {
		ph.Share = ph.BPFNsPer / ph.TracedNsPer
	}
	return ph
}

// printKernelCost writes the text form of kc.
func printKernelCost(w io.Writer, kc *kernelCost) {
	if kc == nil {
		return
	}
	where := "tracer and workload sharing CPUs"
	if kc.Pinned {
		where = fmt.Sprintf("tracer on CPU %d, workload on CPU %d", tracerCPU, workloadCPU)
	}
	fmt.Fprintf(w, "in-kernel cost (BPF run-time statistics, one more traced round; %s):\n", where)
	fmt.Fprintf(w, "%-16s %16s %16s %8s %16s %8s\n", "", "no tracer/route", "BPF/route", "ratio", "this round/route", "share")
	for _, ph := range kc.Phases {
		fmt.Fprintf(w, "%-16s %14.0fns %14.0fns %8.3f %14.0fns %8.3f\n",
			ph.Name, ph.NoTracerNsPer, ph.BPFNsPer, ph.Ratio, ph.TracedNsPer, ph.Share)
	}
	for _, ph := range kc.Phases {
		fmt.Fprintf(w, "  %s, per program:", ph.Name)
		for _, p := range ph.Programs {
			fmt.Fprintf(w, " %s %d runs %.0fns/run;", p.Name, p.Runs, p.NsPerRun)
		}
		fmt.Fprintf(w, " %d recursion misses\n", ph.RecursionMisses)
	}
}
