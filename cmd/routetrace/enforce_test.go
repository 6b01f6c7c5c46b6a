package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/policy"
)

// auditPolicy protects the test's documentation prefix and table 100, and
// lets a process named "cni-owner" change them.
const auditPolicy = `mode: audit
protect:
  - prefix: 198.51.0.0/16
  - table: 100
allow:
  - comm: cni-owner
`

func writePolicy(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// trace --policy judges every change and refuses none: a protected
// deletion by a process the policy does not allow is reported would-block
// (and journaled so), the owner's is not judged, and neither are an
// unprotected change nor a failed one.
func TestTracePolicyAudit(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	path := writePolicy(t, auditPolicy)
	state := t.TempDir()
	p := startTrace(t, ns, "--output", "json", "--policy", path, "--state-dir", state)

	add := ip(ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	owner := runAs(t, "cni-owner", ns, "route", "add", "198.51.101.0/24", "dev", "v0")
	del := ip(ns, "route", "del", "198.51.100.0/24", "table", "100", "metric", "77")
	ownerDel := runAs(t, "cni-owner", ns, "route", "del", "198.51.101.0/24", "dev", "v0")
	other := ip(ns, "route", "add", "203.0.113.0/24", "dev", "v0")
	otherDel := ip(ns, "route", "del", "203.0.113.0/24", "dev", "v0")
	missing := ipFails(t, ns, "route", "del", "198.51.200.0/24")

	stdout, stderr := p.stop()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	rule := fmt.Sprintf("protect[0] prefix 198.51.0.0/16 (%s:3)", path)
	unjudged := fields{"verdict": nil, "protected_by": nil, "verdict_reason": nil}
	checkJSON(t, parseJSONLines(t, stdout), ns,
		// An add inside a protected prefix counts only with more-specific.
		expect{add, merge(unjudged, fields{"op": "add", "dst": "198.51.100.0/24"})},
		expect{owner, merge(unjudged, fields{"op": "add", "actor.comm": "cni-owner"})},
		expect{del, fields{"op": "delete", "dst": "198.51.100.0/24", "verdict": "would-block", "protected_by": rule, "verdict_reason": nil, "missing_us": nil}},
		expect{ownerDel, merge(unjudged, fields{"op": "delete", "actor.comm": "cni-owner"})},
		expect{other, merge(unjudged, fields{"op": "add", "dst": "203.0.113.0/24"})},
		expect{otherDel, merge(unjudged, fields{"op": "delete", "dst": "203.0.113.0/24"})},
		expect{missing, merge(unjudged, fields{"op": "delete", "errno": 3})},
	)
	want := fmt.Sprintf("enforce: mode audit, policy %s: 0 blocked, 1 would-block, 0 repaired", path)
	if !strings.Contains(stderr, want+"\n") {
		t.Errorf("stderr has no line %q:\n%s", want, stderr)
	}

	// The verdict is journaled: history finds the one change by it.
	got, _ := history(t, "--state-dir", state, "--output", "json", "--verdict", "would-block")
	lines := eventLines(got)
	if len(lines) != 1 || !strings.Contains(lines[0], `"verdict":"would-block","protected_by":`) || !strings.Contains(lines[0], `"dst":"198.51.100.0/24"`) {
		t.Errorf("history --verdict would-block:\n%s", got)
	}
}

func TestEnforceRefusesBadPolicy(t *testing.T) {
	bad := writePolicy(t, "mode: block\nprotect:\n  - prefix: 10.244.0.0/33\n  - protcol: bird\nallow:\n  - comm: a-name-longer-than-fifteen\n")
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"enforce", "--policy", bad}, []string{
			"policy not loaded, nothing enforced",
			bad + ":3: protect[0].prefix: ",
			bad + ":4: protect[1]",
			"protcol",
			bad + ":6: allow[0].comm: ",
		}},
		{[]string{"trace", "--policy", bad}, []string{bad + ":3: protect[0].prefix: "}},
		{[]string{"enforce"}, []string{"--policy is required"}},
		{[]string{"enforce", "--policy", "auto"}, []string{"--policy auto needs --dry-run"}},
		{[]string{"enforce", "--policy", writePolicy(t, auditPolicy), "--mode", "loud"}, []string{`--mode "loud": want audit, block or repair`}},
		{[]string{"enforce", "--policy", filepath.Join(t.TempDir(), "none.yaml")}, []string{"none.yaml", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := run(t, 10*time.Second, tt.args...)
			if r.code != 1 {
				t.Fatalf("exit status %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

// A policy file that changes is put in force whole; one that no longer
// loads leaves the previous policy in force.
func TestJudgeReload(t *testing.T) {
	path := writePolicy(t, auditPolicy)
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	j := newJudgeStage(p, path, policy.ModeAudit)
	var seen []*policy.Policy
	j.reloaded = func(p *policy.Policy) error {
		seen = append(seen, p)
		return nil
	}
	del := func() *event.Event {
		ev := &event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet, Table: 254,
			Dst: netip.MustParsePrefix("203.0.113.0/24"), Actor: event.Actor{Tgid: 42}}
		ev.Actor.Comm.Set("ip")
		j.Judge(ev)
		return ev
	}
	if v := del().Enforcement.Verdict; v != event.VerdictNone {
		t.Fatalf("before reload: verdict %v", v)
	}

	if err := os.WriteFile(path, []byte(strings.Replace(auditPolicy, "198.51.0.0/16", "203.0.113.0/24", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	j.reload("test")
	if ev := del(); ev.Enforcement.Verdict != event.VerdictWouldBlock || ev.Enforcement.Rule != "protect[0] prefix 203.0.113.0/24 ("+path+":3)" {
		t.Fatalf("after reload: %+v", ev.Enforcement)
	}
	if len(seen) != 1 {
		t.Fatalf("reloaded hook called %d times, want 1", len(seen))
	}

	// A broken file: the policy in force stays, the hook is not told.
	if err := os.WriteFile(path, []byte("protect:\n  - prefix: nonsense\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	j.reload("test")
	if ev := del(); ev.Enforcement.Verdict != event.VerdictWouldBlock {
		t.Fatalf("a broken reload changed the policy in force: %+v", ev.Enforcement)
	}
	// A hook that refuses the new policy (block mode's maps) keeps the
	// old one too.
	if err := os.WriteFile(path, []byte(auditPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	j.reloaded = func(*policy.Policy) error { return fmt.Errorf("maps full") }
	j.reload("test")
	if ev := del(); ev.Enforcement.Verdict != event.VerdictWouldBlock {
		t.Fatalf("a refused reload changed the policy in force: %+v", ev.Enforcement)
	}
	if s := j.summary(); s != "enforce: mode audit, policy "+path+": 0 blocked, 3 would-block, 0 repaired" {
		t.Errorf("summary %q", s)
	}
}
