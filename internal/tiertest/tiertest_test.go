package tiertest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder stands in for a test so that Refused's Fatalf and Skipf can be
// seen instead of ending this test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recorder) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }

func TestRefused(t *testing.T) {
	refusal := errors.New("attaching a trivial fentry program to fib_table_lookup: operation not permitted")
	for _, tc := range []struct {
		env, tier string
		fail      bool
	}{
		{env: "", tier: "fentry", fail: false},                        // the host: nothing expected
		{env: "fentry,kprobe,tracepoint", tier: "fentry", fail: true}, // a listed kernel
		{env: "fentry,kprobe,tracepoint", tier: "kprobe", fail: true},
		{env: "kprobe,tracepoint", tier: "fentry", fail: false}, // a kernel known to lack fentry
		{env: "1", tier: "fentry", fail: false},                 // the old value names no tier
		{env: "fentry,kprobe", tier: "", fail: false},           // auto is never forced
		{env: "fentryx", tier: "fentry", fail: false},           // whole names only
	} {
		t.Run(fmt.Sprintf("%s=%q/%s", Env, tc.env, tc.tier), func(t *testing.T) {
			t.Setenv(Env, tc.env)
			r := &recorder{}
			Refused(r, tc.tier, refusal)
			if tc.fail {
				if r.fatal == "" || r.skip != "" {
					t.Fatalf("fatal %q, skip %q; want a failure only", r.fatal, r.skip)
				}
				want := fmt.Sprintf("--attach=%s refused on a kernel where it is expected to work (%s=%s): %v", tc.tier, Env, tc.env, refusal)
				if r.fatal != want {
					t.Errorf("failure\n %q, want\n %q", r.fatal, want)
				}
				return
			}
			if r.skip == "" || r.fatal != "" {
				t.Fatalf("fatal %q, skip %q; want a skip only", r.fatal, r.skip)
			}
			if !strings.HasSuffix(r.skip, ": "+refusal.Error()) || !strings.HasPrefix(r.skip, "--attach="+tc.tier+" refused on this kernel") {
				t.Errorf("skip %q does not give the tier and the refusal", r.skip)
			}
		})
	}
}

func TestTierIndependent(t *testing.T) {
	for _, tc := range []struct {
		once, attach, on string
		skip             bool
	}{
		{once: "", attach: "fentry", skip: false}, // the host: everything runs
		{once: "", attach: "", skip: false},
		{once: "tracepoint", attach: "tracepoint", skip: false},
		{once: "tracepoint", attach: "fentry", skip: true},
		{once: "tracepoint", attach: "", skip: true}, // auto is not the once tier
		// arm64 6.1: amd64 6.1 runs them, under every tier here
		{on: "6.1/amd64", attach: "kprobe", skip: true},
		{on: "6.1/amd64", attach: "tracepoint", skip: true},
	} {
		t.Run(fmt.Sprintf("once=%q/attach=%q/on=%q", tc.once, tc.attach, tc.on), func(t *testing.T) {
			t.Setenv(OnceEnv, tc.once)
			t.Setenv(AttachEnv, tc.attach)
			t.Setenv(IndependentOnEnv, tc.on)
			r := &recorder{}
			TierIndependent(r)
			want := ""
			switch {
			case tc.on != "":
				want = "tier-independent: runs on " + tc.on + ", the same kernel series built for another architecture"
			case tc.skip:
				want = "tier-independent: runs once per kernel, under --attach=" + tc.once
			}
			if r.skip != want || r.fatal != "" {
				t.Fatalf("skip %q, fatal %q; want skip %q", r.skip, r.fatal, want)
			}
		})
	}
}
