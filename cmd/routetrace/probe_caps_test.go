package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// TestProbeWithoutSysAdmin: with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN but
// not CAP_SYS_ADMIN (a container granted only the BPF capabilities),
// probe says that only routetrace's own namespace can be heard: tier 3's
// listeners enter each namespace with setns, which needs CAP_SYS_ADMIN.
// It said "privileges ok" before, and the DaemonSet would have missed pods.
func TestProbeWithoutSysAdmin(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	capsh, err := exec.LookPath("capsh")
	if err != nil {
		t.Skip("capsh (libcap2-bin) not installed: cannot drop CAP_SYS_ADMIN")
	}
	out, err := exec.Command(capsh, "--drop=cap_sys_admin", "--", "-c", binary+" probe").CombinedOutput()
	if err != nil {
		t.Fatalf("probe without CAP_SYS_ADMIN: %v\n%s", err, out)
	}
	const want = "privileges  ok for this network namespace; other namespaces (pods) also need CAP_SYS_ADMIN: their listeners are opened from inside them (setns)"
	if !strings.Contains(string(out), "\n"+want+"\n") {
		t.Errorf("probe without CAP_SYS_ADMIN has no line %q:\n%s", want, out)
	}
	full, _ := exec.Command(binary, "probe").CombinedOutput()
	if !strings.Contains(string(full), "\nprivileges  ok\n") {
		t.Errorf("probe as root has no line \"privileges  ok\":\n%s", full)
	}
}
