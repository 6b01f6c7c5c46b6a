package enforce

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/routetrace/routetrace/internal/bpffeat"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// noTrampoline says whether the kernel cannot make BPF trampolines for
// kernel functions, from an fentry attach of the test's own on the
// function the enforcer's netlink program hooks. There no BPF LSM program
// can attach, and Probe must name that cause.
func noTrampoline(tb testing.TB) bool {
	tb.Helper()
	err := tiertest.FentryAttach("bpf_lsm_netlink_send")
	return errors.Is(err, link.ErrNotSupported)
}

// wantNoTrampoline is Probe's refusal on such a kernel.
const wantNoTrampoline = "LSM program refused: the kernel cannot attach BPF LSM programs (no BPF trampoline on this architecture: " +
	"attaching lsm/netlink_send failed with ENOTSUPP (524), ftrace direct calls are missing); enforce mode auto repairs instead"

// requireLSM skips where BPF LSM programs are refused, with the reason, and
// fails inside vmtest, whose kernels boot with lsm=...,bpf.
func requireLSM(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loading BPF programs")
	}
	if err := Probe(); err != nil {
		// A kernel without bpf_loop cannot run the enforcer at all;
		// TestProbeNamesTheCause checks that it says so by name.
		if errors.Is(err, bpffeat.ErrNoBPFLoop) {
			tb.Skipf("%v", err)
		}
		// A kernel without trampolines cannot run the enforcer at all:
		// TestProbeNamesTheCause asserts the refusal there.
		if errors.Is(err, ErrNoTrampoline) && noTrampoline(tb) {
			tb.Skipf("BPF LSM programs cannot attach on this kernel, which has no BPF trampoline (fentry is refused too): %v", err)
		}
		if os.Getenv(tiertest.Env) != "" {
			tb.Fatalf("BPF LSM must work in vmtest: %v", err)
		}
		tb.Skipf("BPF LSM programs refused here: %v", err)
	}
}

// On a host whose kernel lists bpf among the LSMs but refuses the
// programs, Probe names the cause; elsewhere it must say why not, or
// nothing.
func TestProbeNamesTheCause(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loading BPF programs")
	}
	err := Probe()
	raw, rerr := os.ReadFile("/sys/kernel/security/lsm")
	switch {
	case rerr != nil:
		if err == nil || !strings.Contains(err.Error(), "reading the active LSMs") {
			t.Fatalf("Probe() = %v without /sys/kernel/security/lsm", err)
		}
	case !lsmActive(strings.TrimSpace(string(raw))):
		want := "BPF LSM not active: boot with lsm=" + strings.TrimSpace(string(raw)) + ",bpf"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Probe() = %v, want it to start with %q", err, want)
		}
	case errors.Is(bpffeat.BPFLoop(), bpffeat.ErrNoBPFLoop):
		// Before, 5.10 refused with the verifier's "number of funcs in
		// func_info doesn't match number of subprogs".
		if want := "enforce: not offered: the kernel lacks the bpf_loop helper (Linux 5.17)"; err == nil || err.Error() != want {
			t.Fatalf("Probe() = %v on a kernel without bpf_loop, want %q", err, want)
		}
		if _, lerr := Load(Options{}); lerr == nil || lerr.Error() != err.Error() {
			t.Fatalf("Load() = %v on a kernel without bpf_loop, want %q", lerr, err)
		}
	case noTrampoline(t):
		// Checked before the vmtest rule below: no kernel configuration
		// gives BPF LSM here, and the refusal must say why.
		if err == nil || err.Error() != wantNoTrampoline || !errors.Is(err, ErrNoTrampoline) || !errors.Is(err, link.ErrNotSupported) {
			t.Fatalf("Probe() = %v on a kernel whose fentry attach is refused with ENOTSUPP, want %q", err, wantNoTrampoline)
		}
		t.Logf("refused here, as expected of a kernel without BPF trampolines: %v", err)
	case err != nil:
		if !strings.HasPrefix(err.Error(), "LSM program refused: ") {
			t.Fatalf("Probe() = %v, want an error naming the refused LSM program", err)
		}
		if os.Getenv(tiertest.Env) != "" {
			t.Fatalf("BPF LSM must work in vmtest: %v", err)
		}
		t.Logf("refused here, as expected of this host: %v", err)
	}
	if again := Probe(); (again == nil) != (err == nil) {
		t.Fatalf("Probe() not cached: %v then %v", err, again)
	}
}
