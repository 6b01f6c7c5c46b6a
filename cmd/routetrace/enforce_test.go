package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/enforce"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/bpffeat"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
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
	tiertest.TierIndependent(t)
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
	tiertest.TierIndependent(t)
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

// urfave/cli takes a flag usage's first `quoted` text as the value's
// placeholder: "--ioctl routetrace probe" in --help. Usages quote nothing.
func TestFlagUsageHasNoBackquotes(t *testing.T) {
	for _, cmd := range []*cli.Command{traceCommand(), enforceCommand(), historyCommand(), whyCommand(), probeCommand(), benchCommand()} {
		for _, f := range cmd.Flags {
			if d, ok := f.(cli.DocGenerationFlag); ok && strings.Contains(d.GetUsage(), "`") {
				t.Errorf("%s --%s: usage has a backquote: %q", cmd.Name, f.Names()[0], d.GetUsage())
			}
		}
	}
}

// enforce --mode repair in a namespace: a protected route deleted by a
// process the policy does not allow is back at once, with its attributes,
// and the deletion says repaired; the owner's deletion stays deleted.
func TestEnforceRepair(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	path := writePolicy(t, strings.Replace(auditPolicy, "mode: audit", "mode: repair", 1))
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "mtu", "1400", "table", "100")
	ns.IP("route", "add", "198.51.101.0/24", "dev", "v0")
	show := func() string {
		_, out, err := ns.TryIP("-d", "route", "show", "table", "100")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := show()
	p := startCommand(t, ns, nil, "enforce", "--policy", path, "--output", "json")

	del := ip(ns, "route", "del", "198.51.100.0/24", "table", "100")
	ownerDel := runAs(t, "cni-owner", ns, "route", "del", "198.51.101.0/24", "dev", "v0")
	deadline := time.Now().Add(5 * time.Second)
	for show() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := show()
	stdout, stderr := p.stop()
	if got != want {
		t.Fatalf("table 100 after the repair:\n%s\nwant:\n%s\nstderr:\n%s", got, want, stderr)
	}
	if _, out, _ := ns.TryIP("route", "show", "198.51.101.0/24"); out != "" {
		t.Errorf("the owner's deletion was undone: %q", out)
	}
	rule := fmt.Sprintf("protect[0] prefix 198.51.0.0/16 (%s:3)", path)
	var repaired jsonLine
	for _, l := range parseJSONLines(t, stdout) {
		if fmt.Sprint(l["actor.pid"]) == fmt.Sprint(del.pid) {
			repaired = l
		}
	}
	checkFields(t, "the deletion", repaired, fields{"op": "delete", "dst": "198.51.100.0/24", "table": 100, "metric": 77,
		"verdict": "repaired", "protected_by": rule, "verdict_reason": nil})
	if us, err := jsonFloat(repaired["missing_us"]); err != nil || us <= 0 || us > 5e6 {
		t.Errorf("missing_us = %v (%v), want a positive time under 5 s", repaired["missing_us"], err)
	}
	checkJSON(t, parseJSONLines(t, stdout), ns,
		expect{del, fields{"verdict": "repaired"}},
		expect{ownerDel, fields{"verdict": nil, "actor.comm": "cni-owner"}},
	)
	if !strings.Contains(stderr, fmt.Sprintf("enforce: mode repair, policy %s: 0 blocked, 0 would-block, 1 repaired (missing for median ", path)) {
		t.Errorf("stderr has no enforce summary with one repair:\n%s", stderr)
	}
	if !strings.Contains(stderr, "enforce: mode repair (the policy file's)") {
		t.Errorf("stderr does not say which mode and why:\n%s", stderr)
	}
}

// --dry-run checks a policy against the namespace: each entry with what it
// matches now. --policy auto --dry-run prints a policy built from it.
func TestEnforceDryRun(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("link", "add", "cali1a2b3c4d", "type", "veth", "peer", "name", "c1")
	ns.IP("link", "set", "cali1a2b3c4d", "up")
	ns.IP("route", "add", "10.244.7.5/32", "dev", "cali1a2b3c4d", "proto", "bird")
	ns.IP("route", "add", "blackhole", "10.244.7.0/26", "proto", "bird")
	path := writePolicy(t, "protect:\n  - interface: \"cali*\"\n  - prefix: 10.96.0.0/12\nallow:\n  - comm: bird\n")
	r := run(t, 10*time.Second, "enforce", "--policy", path, "--netns", ns.Name, "--dry-run", "--mode", "audit")
	want := fmt.Sprintf("policy %s: valid; mode audit (--mode)\n\nin /run/netns/%s (netns %d):\n", path, ns.Name, ns.Inode) +
		fmt.Sprintf("  protect[0] interface cali* (%s:2)\n      interfaces now: cali1a2b3c4d\n      routes now: 10.244.7.5/32 table 254\n", path) +
		fmt.Sprintf("  protect[1] prefix 10.96.0.0/12 (%s:3)\n      routes now: none\n", path) +
		"  allow entries: 1; cgroups matching them now: 0; executables: 0\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
	}

	r = run(t, 10*time.Second, "enforce", "--policy", "auto", "--netns", ns.Name, "--dry-run")
	if r.code != 0 {
		t.Fatalf("auto: exit %d: %s", r.code, r.stderr)
	}
	p, err := policy.Parse("auto.yaml", []byte(r.stdout))
	if err != nil {
		t.Fatalf("the printed policy does not load: %v\n%s", err, r.stdout)
	}
	var got []string
	for i := range p.Protect {
		got = append(got, strings.SplitN(p.Protect[i].String(), " (", 2)[0])
	}
	for _, w := range []string{"protect[0] prefix 10.244.7.0/26", "protect[1] interface cali*"} {
		if !slices.Contains(got, w) {
			t.Errorf("auto policy protects %q, want %s among them:\n%s", got, w, r.stdout)
		}
	}
}

// requireBlock skips where BPF LSM programs are refused (this host), and
// fails where they must attach (vmtest boots its kernels with lsm=...,bpf).
func requireBlock(t *testing.T) {
	t.Helper()
	testnet.RequireRoot(t)
	if err := enforce.Probe(); err != nil {
		// Refused by name where the kernel lacks bpf_loop (TestProbe
		// checks the line): not a failure of block mode.
		if errors.Is(err, bpffeat.ErrNoBPFLoop) {
			t.Skipf("%v", err)
		}
		// Likewise where the architecture has no BPF trampoline (arm64
		// 6.1), if a trampoline of the test's own is refused too.
		if errors.Is(err, enforce.ErrNoTrampoline) && errors.Is(tiertest.FentryAttach("fib_table_lookup"), link.ErrNotSupported) {
			t.Skipf("%v", err)
		}
		if os.Getenv("ROUTETRACE_VMTEST") != "" {
			t.Fatalf("block mode refused in vmtest, whose kernels boot with the BPF LSM: %v", err)
		}
		t.Skipf("block mode refused here (vmtest runs it): %v", err)
	}
	release := func() {
		if r := run(t, 10*time.Second, "enforce", "--release"); r.code != 0 {
			t.Errorf("enforce --release: exit %d: %s", r.code, r.stderr)
		}
	}
	release() // an earlier test's pins would be adopted
	t.Cleanup(release)
}

// refused runs ip and requires EPERM.
func refused(t *testing.T, ns *testnet.Netns, args ...string) change {
	t.Helper()
	from := time.Now()
	pid, out, err := ns.TryIP(args...)
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("ip %s: err %v, output %q; want EPERM", strings.Join(args, " "), err, out)
	}
	return change{pid, from, time.Now()}
}

func routePresent(t *testing.T, ns *testnet.Netns, dst string) bool {
	t.Helper()
	_, out, err := ns.TryIP("route", "show", dst)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(out, dst)
}

// enforce --mode block with real ip and route(8): the kernel refuses a
// protected deletion by anyone but the owner, over netlink and ioctl, and
// each refusal is reported with its actor; a reload moves the protection
// with no gap; the enforcement outlives a kill -9 of routetrace, a new
// routetrace adopts it, and --release ends it.
func TestEnforceBlock(t *testing.T) {
	tiertest.TierIndependent(t)
	requireBlock(t)
	ns := testnet.New(t)
	path := writePolicy(t, strings.Replace(auditPolicy, "mode: audit", "mode: block", 1))
	for _, dst := range []string{"198.51.100.0/24", "198.51.101.0/24", "198.51.102.0/24", "203.0.113.0/24"} {
		ns.IP("route", "add", dst, "dev", "v0")
	}
	p := startCommand(t, ns, nil, "enforce", "--policy", path, "--output", "json")

	del := refused(t, ns, "route", "del", "198.51.100.0/24")
	owner := runAs(t, "cni-owner", ns, "route", "del", "198.51.101.0/24")
	free := ip(ns, "route", "del", "203.0.113.0/24") // not protected
	var ioctl *change
	if _, err := exec.LookPath("route"); err == nil {
		from := time.Now()
		pid, out, _ := ns.Exec("route", "del", "-net", "198.51.102.0", "netmask", "255.255.255.0")
		if !strings.Contains(out, "Operation not permitted") {
			t.Errorf("route del (ioctl): %q, want EPERM", out)
		}
		ioctl = &change{pid, from, time.Now()}
	} else if os.Getenv("ROUTETRACE_VMTEST") != "" {
		t.Error("net-tools route is missing in vmtest")
	}
	for _, dst := range []string{"198.51.100.0/24", "198.51.102.0/24"} {
		if !routePresent(t, ns, dst) {
			t.Errorf("%s was deleted", dst)
		}
	}
	if routePresent(t, ns, "198.51.101.0/24") {
		t.Error("the owner's deletion was refused")
	}

	// A reload: the prefix is no longer protected, table 100 still is.
	add := ip(ns, "route", "add", "198.51.103.0/24", "dev", "v0", "table", "100")
	if err := os.WriteFile(path, []byte("mode: block\nprotect:\n  - table: 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderrNow(), "policy reloaded") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.stderrNow(), "policy reloaded") {
		t.Fatalf("no reload 10 s after SIGHUP:\n%s", p.safeStderr())
	}
	tableDel := refused(t, ns, "route", "del", "198.51.103.0/24", "table", "100")
	afterReload := ip(ns, "route", "del", "198.51.100.0/24")

	stdout, stderr := p.stop()
	rule := fmt.Sprintf("protect[0] prefix 198.51.0.0/16 (%s:3)", path)
	expects := []expect{
		{del, fields{"op": "delete", "object": "route", "dst": "198.51.100.0/24", "verdict": "blocked", "protected_by": rule,
			"errno": 1, "error": "EPERM", "actor.comm": "ip", "origin": "netlink"}},
		{owner, fields{"op": "delete", "dst": "198.51.101.0/24", "verdict": nil, "errno": 0, "actor.comm": "cni-owner"}},
		{free, fields{"op": "delete", "dst": "203.0.113.0/24", "verdict": nil, "errno": 0}},
		{add, fields{"op": "add", "dst": "198.51.103.0/24", "verdict": nil, "errno": 0}},
		// After the reload: table 100 is protected (by the new policy's
		// first entry), the prefix no longer.
		{tableDel, fields{"op": "delete", "dst": "198.51.103.0/24", "table": 100, "verdict": "blocked",
			"protected_by": fmt.Sprintf("protect[0] table 100 (%s:3)", path), "errno": 1}},
		{afterReload, fields{"op": "delete", "dst": "198.51.100.0/24", "verdict": nil, "errno": 0}},
	}
	if ioctl != nil {
		expects = append(expects, expect{*ioctl, fields{"op": "delete", "dst": "198.51.102.0/24", "verdict": "blocked",
			"protected_by": rule, "errno": 1, "actor.comm": "route", "origin": "ioctl"}})
	}
	lines := parseJSONLines(t, stdout)
	checkJSON(t, lines, ns, expects...)
	// A refusal has no kernel record of its process (the enforcer sends
	// none): it is named from /proc, best effort, since a process that
	// exits at once (ip, on EPERM) may be gone or half gone by then (its
	// command line still there, its exe link not). The event must say so.
	for _, l := range lines {
		if fmt.Sprint(l["actor.pid"]) != fmt.Sprint(del.pid) {
			continue
		}
		exe, note := l["actor.exe"], fmt.Sprint(l["actor.enrich_error"])
		if exe != "/usr/sbin/ip" && !strings.HasPrefix(note, "no kernel record of the process") {
			t.Errorf("the refused ip: exe %v, enrich_error %q: want its exe, or why it is missing", exe, note)
		}
	}
	// The kernel's own counters close the summary: nothing refused was lost.
	if !strings.Contains(stderr, "; in the kernel: ") || !strings.Contains(stderr, " refused (0 fail-closed), 0 refusals lost (ring full)\n") {
		t.Errorf("stderr has no kernel counters, or they say refusals were lost:\n%s", stderr)
	}
	if !strings.Contains(stderr, "enforce: mode block (the policy file's)") || !strings.Contains(stderr, "enforce: the kernel keeps refusing") {
		t.Errorf("stderr does not say the mode and that enforcement stays:\n%s", stderr)
	}

	// routetrace is gone: the kernel still refuses (the table 100 policy).
	refused(t, ns, "route", "del", "198.51.103.0/24", "table", "100")
	// A new agent killed with SIGKILL: still refused after it.
	p2 := startCommand(t, ns, nil, "enforce", "--policy", path, "--output", "json")
	p2.cmd.Process.Kill()
	<-p2.exited
	refused(t, ns, "route", "del", "198.51.103.0/24", "table", "100")
	// Break-glass.
	if r := run(t, 10*time.Second, "enforce", "--release"); r.code != 0 || !strings.Contains(r.stderr, "released") {
		t.Fatalf("--release: exit %d: %s", r.code, r.stderr)
	}
	// The kernel detaches a released program once its link's last
	// reference is dropped, which it does asynchronously: allow a moment.
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, out, err := ns.TryIP("route", "del", "198.51.103.0/24", "table", "100")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(enforce.PinDir)
			t.Fatalf("still refused 5 s after --release: %v: %s (pins left: %v)", err, out, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
