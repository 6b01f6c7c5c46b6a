// Package bpffeat probes the BPF features that decide whether a whole part
// of routetrace can run on a kernel at all, so that a part that cannot is
// refused with the feature it lacks instead of a verifier error. Probing
// loads a program; comparing kernel versions would lie on backports.
package bpffeat

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// ErrNoBPFLoop: the kernel has no bpf_loop helper. Tier 3's netlink
// capture and the BPF LSM enforcer walk messages and attributes with it.
// Without it a program that calls it fails to load with a confusing
// verifier message ("number of funcs in func_info doesn't match number of
// subprogs" on 5.10, whose verifier does not know callback subprograms).
// The version in the message tells a reader where to look, it is never
// compared.
var ErrNoBPFLoop = errors.New("the kernel lacks the bpf_loop helper (Linux 5.17)")

var (
	loopOnce sync.Once
	loopErr  error
)

// BPFLoop returns nil when programs can call bpf_loop, ErrNoBPFLoop when
// the kernel lacks it, or why the probe itself failed (no privileges).
// The result is cached.
func BPFLoop() error {
	loopOnce.Do(func() {
		err := features.HaveProgramHelper(ebpf.TracePoint, asm.FnLoop)
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			loopErr = ErrNoBPFLoop
		case err != nil:
			loopErr = fmt.Errorf("probing for the bpf_loop helper: %w", err)
		}
	})
	return loopErr
}
