package enforce

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/internal/bpffeat"
	"github.com/routetrace/routetrace/internal/tiertest"
)

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
