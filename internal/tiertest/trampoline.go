package tiertest

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// FentryAttach loads a trivial fentry program on fn and attaches it: nil
// when the kernel can, else why not. Tests check routetrace's own probes
// against it: where it fails with link.ErrNotSupported (ENOTSUPP, 524) the
// kernel has no BPF trampoline for kernel functions, and both the tracer's
// fentry tier and the BPF LSM enforcer must say so. It is its own attach,
// not routetrace's, so that a bug in routetrace's probe cannot agree with
// itself.
func FentryAttach(fn string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "tt_fentry", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: fn,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}, License: "GPL",
	})
	if err != nil {
		return fmt.Errorf("loading an fentry program on %s: %w", fn, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attaching an fentry program to %s: %w", fn, err)
	}
	return l.Close()
}
