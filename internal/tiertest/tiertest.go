// Package tiertest decides what a privileged test does when the kernel
// refuses the attach tier it forces: on a kernel where vmtest expects that
// tier to work it is a failure, elsewhere (this project's build hosts
// refuse fentry and have no kprobes) a skip with the kernel's reason.
//
// Without it a listed kernel that renamed a hooked function, or lost
// kprobes, would read PASS in vmtest's table, every test having skipped.
package tiertest

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Env names the tiers that must attach on the running kernel, comma
// separated (fentry,kprobe,tracepoint). vmtest sets it in every guest, to
// the tiers it forces unless told otherwise (--expect-tiers); unset or
// empty, no tier is expected and refusals skip.
const Env = "ROUTETRACE_VMTEST"

// Expected reports whether Env says tier must attach here.
func Expected(tier string) bool {
	return slices.Contains(strings.Split(os.Getenv(Env), ","), tier) && tier != ""
}

// Refused ends t because the kernel refused the forced tier, with the
// refusal (an error or the tracer's stderr) as the message: t fails where
// the tier is expected, and skips elsewhere.
func Refused(t testing.TB, tier string, refusal any) {
	t.Helper()
	if Expected(tier) {
		t.Fatalf("--attach=%s refused on a kernel where it is expected to work (%s=%s): %v", tier, Env, os.Getenv(Env), refusal)
		return
	}
	t.Skipf("--attach=%s refused on this kernel (vmtest runs it where it is expected to work): %v", tier, refusal)
}

// OnceEnv names the attach tier under which a vmtest boot runs the tests
// that do not depend on the tier (the CLI's flags, history, enforcement,
// repair...). vmtest boots once per kernel and runs every test binary once
// per tier; running those tests under each tier would triple the time spent
// on what only one run can fail. Unset (the host, or a run of one tier),
// every test runs.
const OnceEnv = "ROUTETRACE_VMTEST_ONCE_TIER"

// IndependentOnEnv, set in a vmtest boot, names the kernel list entry
// (<series>/<arch>) that runs the tier-independent tests for this one:
// they depend neither on the tier nor on the architecture (user space over
// netlink, cross-compiled from the same Go), and under arm64 TCG they cost
// more than all the tests of the hooks.
const IndependentOnEnv = "ROUTETRACE_VMTEST_INDEPENDENT_ON"

// AttachEnv is the tier a test run forces (the tests' own convention,
// read by every package's attachMode).
const AttachEnv = "ROUTETRACE_ATTACH"

// TierIndependent marks t as not depending on the attach tier: in a vmtest
// boot it runs only under OnceEnv's tier and skips, before it starts
// anything, under the others. Call it first.
func TierIndependent(t testing.TB) {
	t.Helper()
	if on := os.Getenv(IndependentOnEnv); on != "" {
		t.Skipf("%s: runs on %s, the same kernel series built for another architecture", IndependentReason, on)
		return
	}
	once := os.Getenv(OnceEnv)
	if once == "" {
		return
	}
	if tier := os.Getenv(AttachEnv); tier != once {
		t.Skipf("%s: runs once per kernel, under --attach=%s", IndependentReason, once)
	}
}

// IndependentReason starts the skip message of TierIndependent, so that
// vmtest's summary can count these skips instead of listing each.
const IndependentReason = "tier-independent"
