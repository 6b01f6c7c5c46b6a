package tracer

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/routetrace/routetrace/event"
)

// Whether a tier works at all is probed once, with a trivial program loaded
// and attached for real: the program type being known proves nothing (this
// project's own CI kernel knows fentry and refuses it with EPERM). A tier
// refused here is not tried hook by hook, which would verify every
// program in vain.
var (
	tierOnce [event.AttachTracepoint + 1]sync.Once
	tierErr  [event.AttachTracepoint + 1]error
)

// probeFn is a FIB function present on every kernel routetrace supports.
const probeFn = "fib_table_lookup"

func tierAvailable(tier event.Attach) error {
	if tier != event.AttachFentry && tier != event.AttachKprobe {
		return nil
	}
	tierOnce[tier].Do(func() { tierErr[tier] = explainLoadError(probeTier(tier)) })
	return tierErr[tier]
}

func probeTier(tier event.Attach) error {
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	spec := &ebpf.ProgramSpec{Name: "rt_probe", Instructions: insns, License: "GPL"}
	switch tier {
	case event.AttachFentry:
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceFEntry, probeFn
	case event.AttachKprobe:
		spec.Type = ebpf.Kprobe
		if !kprobesBuiltIn() {
			return errors.New("this kernel has no kprobes (no kprobe PMU and no tracefs kprobe_events)")
		}
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return fmt.Errorf("loading a trivial %s program: %w", tier, err)
	}
	defer prog.Close()
	var l link.Link
	if tier == event.AttachFentry {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	} else {
		l, err = link.Kprobe(probeFn, prog, nil)
	}
	if err != nil {
		if tier == event.AttachFentry && errors.Is(err, link.ErrNotSupported) {
			return &NoTrampolineError{Attach: "fentry programs", Err: err}
		}
		return fmt.Errorf("attaching a trivial %s program to %s: %w", tier, probeFn, err)
	}
	return l.Close()
}

// ErrNoTrampoline matches a NoTrampolineError.
var ErrNoTrampoline = errors.New("no BPF trampoline for kernel functions")

// NoTrampolineError is an attach to a kernel function that the kernel
// refused with ENOTSUPP (524): the program loaded, so the kernel knows the
// program type and the function, but it cannot make the BPF trampoline that
// calls the program from the function. It does so through ftrace direct
// calls, which some architectures lack in some kernels (arm64 before 6.4
// has no CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS). Probes find it by
// attaching, never by looking at the architecture or version.
//
// It has no Unwrap, so that probe's table, which keeps the innermost
// cause, shows this explanation rather than "not supported"; Is still
// matches the attach error.
type NoTrampolineError struct {
	Attach string // what cannot be attached: "fentry programs"
	Err    error  // the attach error
}

func (e *NoTrampolineError) Error() string {
	return "the kernel cannot attach " + e.Attach + " to kernel functions (no BPF trampoline on this architecture: " +
		"the attach failed with ENOTSUPP (524), ftrace direct calls are missing)"
}

func (e *NoTrampolineError) Is(target error) bool {
	return target == ErrNoTrampoline || errors.Is(e.Err, target)
}

func kprobesBuiltIn() bool {
	for _, p := range []string{
		"/sys/bus/event_source/devices/kprobe/type",
		"/sys/kernel/tracing/kprobe_events",
		"/sys/kernel/debug/tracing/kprobe_events",
	} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
