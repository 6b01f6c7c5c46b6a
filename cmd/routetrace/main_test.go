package main

// End-to-end tests of the built binary, in the manner of cilium/pwru's: the
// binary is built once, started as a subprocess with the hidden
// --ready-file flag, the test changes routes in its own network namespace
// with real iproute2, stops the tracer with SIGINT and checks what it
// printed, field by field. ROUTETRACE_ATTACH forces a tier, as in the
// tracer package's tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/bpffeat"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// binary is the routetrace under test: ROUTETRACE_BINARY when set (a VM
// without a Go toolchain), else one TestMain builds from this package.
var binary = os.Getenv("ROUTETRACE_BINARY")

func TestMain(m *testing.M) {
	if binary != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "routetrace-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the build directory:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "routetrace")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building routetrace: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Generous deadlines: a loaded CI machine is slow, and a hang must still
// end with the tracer's stderr in the log. Under arm64 TCG, trace with the
// kprobe tier took 38 s to be ready (30 s was the limit).
const (
	readyTimeout = 2 * time.Minute
	stopTimeout  = 30 * time.Second
	runTimeout   = 4 * time.Minute
	probeTimeout = 6 * time.Minute
)

// traceProc is a running `routetrace trace`.
type traceProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  lockedBuffer // read while it runs (stderrNow)
	exited  chan struct{}
	waitErr error
}

// lockedBuffer is a bytes.Buffer a process writes while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stderrNow is what the process has written to stderr so far; it goes on
// running (safeStderr stops it).
func (p *traceProc) stderrNow() string { return p.stderr.String() }

// startTrace starts `routetrace trace --netns NS args...` and returns once
// the tracer has attached. The namespace is quieted first (see quiet).
func startTrace(t *testing.T, ns *testnet.Netns, args ...string) *traceProc {
	t.Helper()
	return startTraceEnv(t, ns, nil, args...)
}

// startTraceEnv is startTrace with variables added to the environment. A
// run journals into the test's own state directory unless args name one:
// never into the machine's /var/lib/routetrace.
func startTraceEnv(t *testing.T, ns *testnet.Netns, env []string, args ...string) *traceProc {
	t.Helper()
	return startCommand(t, ns, env, "trace", args...)
}

// startCommand starts a subcommand that traces like trace (trace, enforce)
// and waits until it is ready.
func startCommand(t *testing.T, ns *testnet.Netns, env []string, sub string, args ...string) *traceProc {
	t.Helper()
	quiet(t, ns)
	ready := filepath.Join(t.TempDir(), "ready")
	if !slices.Contains(args, "--state-dir") {
		args = append(args, "--state-dir", t.TempDir())
	}
	args = append([]string{sub, "--netns", ns.Name, "--ready-file", ready}, args...)
	mode := os.Getenv("ROUTETRACE_ATTACH")
	if mode != "" {
		args = append(args, "--attach", mode)
	}
	if c := os.Getenv("ROUTETRACE_CAPTURE"); c != "" {
		args = append(args, "--capture", c)
	}
	p := &traceProc{t: t, cmd: exec.Command(binary, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting routetrace: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})

	deadline := time.After(readyTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			return p
		}
		select {
		case <-p.exited:
			if (mode == "fentry" || mode == "kprobe") && isRefusal(p.stderr.String()) {
				tiertest.Refused(t, mode, p.stderr.String())
			}
			t.Fatalf("routetrace %s exited before it was ready: %v\nstderr:\n%s", strings.Join(args, " "), p.waitErr, p.stderr.String())
		case <-deadline:
			t.Fatalf("routetrace not ready after %v\nstderr:\n%s", readyTimeout, p.safeStderr())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// safeStderr is stderr while the process may still write to it.
func (p *traceProc) safeStderr() string {
	p.cmd.Process.Kill()
	<-p.exited
	return p.stderr.String()
}

func isRefusal(stderr string) bool {
	for _, s := range []string{"operation not permitted", "no such file", "not supported", "no kprobes", "no BPF trampoline"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// stop interrupts the tracer as Ctrl-C would, requires exit status 0 and
// returns what it printed.
func (p *traceProc) stop() (stdout, stderr string) {
	p.t.Helper()
	stdout, stderr, code := p.interrupt()
	if code != 0 {
		p.t.Fatalf("routetrace: exit status %d, want 0\nstderr:\n%s", code, stderr)
	}
	return stdout, stderr
}

// interrupt interrupts the tracer as Ctrl-C would and returns what it
// printed and its exit status.
func (p *traceProc) interrupt() (stdout, stderr string, code int) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		p.t.Fatalf("interrupting routetrace: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Fatalf("routetrace still running %v after SIGINT\nstderr:\n%s", stopTimeout, p.safeStderr())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(p.waitErr, &exit):
		code = exit.ExitCode()
	case p.waitErr != nil:
		p.t.Fatalf("routetrace: %v\nstderr:\n%s", p.waitErr, p.stderr.String())
	}
	return p.stdout.String(), p.stderr.String(), code
}

// quiet turns IPv6 off in ns before tracing. Otherwise the kernel adds the
// local routes of v0's and v1's link-local addresses when their duplicate
// address detection ends, during the test, and they count in the summary.
func quiet(t *testing.T, ns *testnet.Netns) {
	t.Helper()
	if _, out, err := ns.Exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"); err != nil {
		t.Fatalf("disabling IPv6 in %s: %v: %s", ns.Name, err, out)
	}
}

// wantAttach is the attach field every event must carry: the forced tier,
// or tracepoint when the tracer logged that no FIB hook attached.
func wantAttach(stderr string) any {
	if mode := os.Getenv("ROUTETRACE_ATTACH"); mode != "" && mode != "auto" {
		return mode
	}
	if strings.Contains(stderr, "msg=attached fentry=0 kprobe=0 tier3=true") {
		return "tracepoint"
	}
	return oneOf{"fentry", "kprobe", "tracepoint"}
}

// change is one command the test ran, and when.
type change struct {
	pid      uint32
	from, to time.Time
}

func ip(ns *testnet.Netns, args ...string) change {
	from := time.Now()
	pid := ns.IP(args...)
	return change{pid, from, time.Now()}
}

// ipFails runs an ip command that must fail with ESRCH.
func ipFails(t *testing.T, ns *testnet.Netns, args ...string) change {
	t.Helper()
	from := time.Now()
	pid, out, err := ns.TryIP(args...)
	if err == nil || !strings.Contains(out, "No such process") {
		t.Fatalf("ip %s: err %v, output %q; want ESRCH", strings.Join(args, " "), err, out)
	}
	return change{pid, from, time.Now()}
}

// runAs runs `ip -n NS args...` from a copy of ip named comm, to make a
// change by a process with another name.
func runAs(t *testing.T, comm string, ns *testnet.Netns, args ...string) change {
	t.Helper()
	path, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), comm)
	if err := os.WriteFile(cp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	pid, out, err := testnet.Run(cp, append([]string{"-n", ns.Name}, args...)...)
	if err != nil {
		t.Fatalf("%s %s: %v: %s", comm, strings.Join(args, " "), err, out)
	}
	return change{pid, from, time.Now()}
}

// inWindow reports whether an event's time lies within its command's run,
// with a little slack for the tracer's conversion from the kernel's clock.
func (c change) inWindow(tm time.Time) bool {
	const slack = 10 * time.Millisecond
	return !tm.Before(c.from.Add(-slack)) && !tm.After(c.to.Add(slack))
}

// A jsonLine is one output line with nested objects flattened: the actor's
// pid is "actor.pid". Numbers stay json.Number, to be compared as text.
type jsonLine map[string]any

func parseJSONLines(t *testing.T, out string) []jsonLine {
	t.Helper()
	if out != "" && !strings.HasSuffix(out, "\n") {
		t.Errorf("output does not end with a newline: %q", out[max(0, len(out)-80):])
	}
	var lines []jsonLine
	for i, s := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if s == "" {
			if out != "" {
				t.Errorf("line %d is empty", i+1)
			}
			continue
		}
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, s)
		}
		if d.More() {
			t.Fatalf("line %d holds more than one value:\n%s", i+1, s)
		}
		l := jsonLine{}
		flatten(l, "", m)
		lines = append(lines, l)
	}
	return lines
}

func flatten(dst jsonLine, prefix string, m map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(dst, prefix+k+".", sub)
		} else {
			dst[prefix+k] = v
		}
	}
}

func (l jsonLine) String() string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, show(l[k], true))
	}
	return strings.TrimPrefix(b.String(), " ")
}

func show(v any, present bool) string {
	if !present {
		return "(absent)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// fields is what a test states about a line: a string or a bool must match
// exactly, an integer must be a JSON number with that value, nil means the
// field must be absent, oneOf accepts any of its strings.
type fields map[string]any

type oneOf []string

func merge(fs ...fields) fields {
	out := fields{}
	for _, f := range fs {
		for k, v := range f {
			out[k] = v
		}
	}
	return out
}

func checkFields(t *testing.T, label string, got jsonLine, want fields) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, present := got[k]
		ok := false
		switch w := want[k].(type) {
		case nil:
			ok = !present
		case string:
			s, isString := g.(string)
			ok = present && isString && s == w
		case bool:
			b, isBool := g.(bool)
			ok = present && isBool && b == w
		case oneOf:
			s, isString := g.(string)
			ok = present && isString && slices.Contains(w, s)
		default:
			n, isNumber := g.(json.Number)
			ok = present && isNumber && n.String() == fmt.Sprint(w)
		}
		if !ok {
			t.Errorf("%s: %s = %s, want %s", label, k, show(g, present), show(want[k], want[k] != nil))
		}
	}
}

// expect is the line one change must produce.
type expect struct {
	c      change
	fields fields
}

// checkJSON asserts that the requested changes in ns are exactly the
// expected ones, one line per command, each field as stated, each time
// within its command's run.
func checkJSON(t *testing.T, lines []jsonLine, ns *testnet.Netns, expects ...expect) {
	t.Helper()
	var ours []jsonLine
	for _, l := range lines {
		if fmt.Sprint(l["netns"]) == fmt.Sprint(ns.Inode) && l["origin"] != "kernel" {
			ours = append(ours, l)
		}
	}
	if len(ours) != len(expects) {
		for _, l := range lines {
			t.Logf("got  %s", l)
		}
		t.Fatalf("got %d requested changes in %s (netns %d), want %d", len(ours), ns.Name, ns.Inode, len(expects))
	}
	for i, e := range expects {
		label := fmt.Sprintf("change %d (pid %d)", i+1, e.c.pid)
		var match []jsonLine
		for _, l := range ours {
			if fmt.Sprint(l["actor.pid"]) == fmt.Sprint(e.c.pid) {
				match = append(match, l)
			}
		}
		if len(match) != 1 {
			for _, l := range ours {
				t.Logf("got  %s", l)
			}
			t.Errorf("%s: %d lines by this process, want 1", label, len(match))
			continue
		}
		l := match[0]
		checkFields(t, label, l, e.fields)
		s, _ := l["time"].(string)
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Errorf("%s: time %q: %v", label, s, err)
		} else if !e.c.inWindow(tm) {
			t.Errorf("%s: time %s is outside the command's run, %s to %s", label, s,
				e.c.from.UTC().Format(time.RFC3339Nano), e.c.to.UTC().Format(time.RFC3339Nano))
		}
	}
}

// noLosses is the summary's loss line when nothing was lost: every
// counter, by name, zeros included.
const noLosses = "lost: ring records 0, overruns 0, truncated 0, unconfirmed 0, evicted 0, read errors 0, listener gaps 0, unlistened 0, kprobe misses 0"

// checkSummary asserts the summary line on stderr, and that nothing was
// lost: the loss line names every counter, each zero.
func checkSummary(t *testing.T, stderr, want string) {
	t.Helper()
	lines := strings.Split(stderr, "\n")
	if !slices.Contains(lines, want) {
		t.Errorf("stderr has no summary line %q:\n%s", want, stderr)
	}
	if !slices.Contains(lines, noLosses) {
		t.Errorf("stderr has no loss line %q:\n%s", noLosses, stderr)
	}
	if strings.Contains(stderr, "warning:") {
		t.Errorf("stderr has a warning:\n%s", stderr)
	}
}

// zeroLosses is the "lost" object of a JSON summary with nothing lost.
var zeroLosses = fields{"summary.lost.ring_records": 0, "summary.lost.overruns": 0, "summary.lost.truncated": 0,
	"summary.lost.unconfirmed": 0, "summary.lost.evicted": 0, "summary.lost.read_errors": 0,
	"summary.lost.listener_gaps": 0, "summary.lost.unlistened": 0, "summary.lost.kprobe_missed": 0, "summary.lost_total": 0}

// checkJSONSummary asserts that the last line of --output json is the one
// summary object and holds exactly the fields in want.
func checkJSONSummary(t *testing.T, lines []jsonLine, want fields) {
	t.Helper()
	var summaries []int
	for i, l := range lines {
		for k := range l {
			if strings.HasPrefix(k, "summary.") {
				summaries = append(summaries, i)
				break
			}
		}
	}
	if len(summaries) != 1 || summaries[0] != len(lines)-1 {
		t.Fatalf("summary objects on lines %v of %d; want one, the last", summaries, len(lines))
	}
	last := lines[len(lines)-1]
	checkFields(t, "summary", last, want)
	for k := range last {
		if _, ok := want[k]; !ok {
			t.Errorf("summary: unexpected field %s = %s", k, show(last[k], true))
		}
	}
}

// selfComm is this test binary's command name, the parent of every ip.
func selfComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// byIP is what every change made by one of the test's ip commands carries.
func byIP(t *testing.T, ns *testnet.Netns, stderr string, c change) fields {
	return fields{"origin": "netlink", "attach": wantAttach(stderr), "netns": ns.Inode,
		"actor.pid": c.pid, "actor.tid": c.pid, "actor.comm": "ip", "actor.ppid": os.Getpid(),
		"actor.pcomm": selfComm(t), "actor.uid": 0, "actor.netns": ns.Inode, "actor.kernel": nil, "cause.op": nil}
}

// routeFields is the route of TestTraceJSON's add and delete.
func routeFields(ns *testnet.Netns) fields {
	return fields{"object": "route", "family": "inet", "dst": "198.51.100.0/24", "src": nil, "gateway": "192.0.2.2",
		"table": 100, "protocol": "static", "protocol_num": 4, "scope": "global", "type": "unicast", "metric": 77,
		"oif": ns.V0, "dev": "v0", "errno": 0, "error": nil}
}

func TestTraceJSON(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	p := startTrace(t, ns, "--output", "json")

	add := ip(ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	rule := ip(ns, "rule", "add", "pref", "512", "from", "10.244.1.5", "lookup", "100")
	del := ip(ns, "route", "del", "198.51.100.0/24", "table", "100", "metric", "77")
	missing := ipFails(t, ns, "route", "del", "10.9.9.0/24")

	stdout, stderr := p.stop()
	checkJSON(t, parseJSONLines(t, stdout), ns,
		expect{add, merge(byIP(t, ns, stderr, add), routeFields(ns), fields{"op": "add"})},
		expect{rule, merge(byIP(t, ns, stderr, rule), fields{"op": "add", "object": "rule", "family": "inet",
			"priority": 512, "src": "10.244.1.5/32", "dst": nil, "table": 100, "action": "lookup", "errno": 0, "error": nil,
			"gateway": nil, "protocol": nil, "metric": nil, "oif": nil, "dev": nil, "iif": nil})},
		expect{del, merge(byIP(t, ns, stderr, del), routeFields(ns), fields{"op": "delete"})},
		expect{missing, merge(byIP(t, ns, stderr, missing), fields{"op": "delete", "object": "route", "family": "inet",
			"dst": "10.9.9.0/24", "gateway": nil, "table": 254, "protocol": "unspec", "metric": 0,
			"oif": nil, "dev": nil, "errno": 3, "error": "ESRCH"})},
	)
	checkSummary(t, stderr, "3 changes by 3 processes (ip 3); 1 failed; 0 lost")
	checkJSONSummary(t, parseJSONLines(t, stdout), merge(zeroLosses, fields{
		"summary.changes": 3, "summary.processes": 3, "summary.failed": 1,
		"summary.by_op.add": 2, "summary.by_op.delete": 1,
		"summary.by_object.route": 2, "summary.by_object.rule": 1,
		"summary.by_actor.ip": 3, "summary.failed_by_errno.ESRCH": 1,
	}))
}

// lossRoutes is how many routes TestTraceLossExitStatus adds while the
// tracer is stopped: far more records than the 4 MiB ring buffer holds
// (about 18,000 of 232 bytes), and more notifications than tier 3's 64 MiB
// socket buffer. Raise it if a design ever holds them all.
const lossRoutes = 100000

// A run that lost records ends with exit status 3, names the counters that
// are not zero, and its JSON summary carries the same counts.
func TestTraceLossExitStatus(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	batch := filepath.Join(t.TempDir(), "add")
	var b strings.Builder
	for i := range lossRoutes {
		a := uint32(10<<24) + uint32(i)<<8
		fmt.Fprintf(&b, "route add %d.%d.%d.0/24 dev v0 proto static\n", a>>24, a>>16&0xff, a>>8&0xff)
	}
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only rules are printed: the routes count, their lines are not needed.
	p := startTrace(t, ns, "--output", "json", "--object", "rule")
	// A stopped tracer reads nothing: the kernel must drop what does not fit.
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ip(ns, "-batch", batch)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := p.interrupt()
	if code != 3 {
		t.Errorf("exit status %d, want 3", code)
	}
	if !strings.Contains(stderr, "routetrace: ") || !strings.Contains(stderr, "(exit status 3)") {
		t.Errorf("stderr does not explain the exit status:\n%s", stderr)
	}
	// The loss line names every counter; the sum of those must be the
	// summary's total, and above zero.
	m := regexp.MustCompile(`(?m)^lost: ring records (\d+), overruns (\d+), truncated (\d+), unconfirmed (\d+), ` +
		`evicted (\d+), read errors (\d+), listener gaps (\d+), unlistened (\d+), kprobe misses (\d+)$`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no loss line naming every counter:\n%s", stderr)
	}
	var total uint64
	counts := map[string]uint64{}
	for i, k := range []string{"ring_records", "overruns", "truncated", "unconfirmed", "evicted", "read_errors", "listener_gaps", "unlistened", "kprobe_missed"} {
		n, _ := strconv.ParseUint(m[i+1], 10, 64)
		counts[k] = n
		total += n
	}
	t.Log(m[0])
	if total == 0 {
		t.Fatalf("nothing counted lost after %d routes added while the tracer was stopped:\n%s", lossRoutes, stderr)
	}
	if !strings.Contains(stderr, fmt.Sprintf("; %d lost\n", total)) {
		t.Errorf("the summary line does not say %d lost:\n%s", total, stderr)
	}
	lines := parseJSONLines(t, stdout)
	if len(lines) == 0 {
		t.Fatalf("no JSON output; stderr:\n%s", stderr)
	}
	last := lines[len(lines)-1]
	want := fields{"summary.lost_total": total}
	for k, n := range counts {
		want["summary.lost."+k] = n
	}
	checkFields(t, "summary", last, want)
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr)
	}
}

// textLine matches a line of text output: the time, then the rest.
var textLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d\.\d{3})  (.*)$`)

// TestTraceText checks the text output's layout; the fields it shows are
// the ones TestTraceJSON checks under every tier, so it runs once per
// kernel.
func TestTraceText(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	p := startTrace(t, ns, "--color", "never")

	add := ip(ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	rule := ip(ns, "rule", "add", "pref", "512", "from", "10.244.1.5", "lookup", "100")
	del := ip(ns, "route", "del", "198.51.100.0/24", "table", "100", "metric", "77")
	missing := ipFails(t, ns, "route", "del", "10.9.9.0/24")

	stdout, stderr := p.stop()
	if strings.Contains(stdout, "\x1b") {
		t.Errorf("--color never printed an escape sequence:\n%q", stdout)
	}
	const route = "198.51.100.0/24 via 192.0.2.2 dev v0 table 100 proto static metric 77"
	wants := []struct {
		c                        change
		op, object, desc, status string
	}{
		{add, "add", "route", route, "ok"},
		{rule, "add", "rule", "pref 512 from 10.244.1.5 lookup 100", "ok"},
		{del, "delete", "route", route, "ok"},
		{missing, "delete", "route", "10.9.9.0/24 table main", "ESRCH"},
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	for i, w := range wants {
		actor := fmt.Sprintf("ip[%d] uid=0", w.c.pid)
		var match []string
		for _, l := range lines {
			if strings.Contains(l, " ip["+strconv.Itoa(int(w.c.pid))+"] ") {
				match = append(match, l)
			}
		}
		if len(match) != 1 {
			t.Errorf("change %d: %d lines by ip[%d], want 1; output:\n%s", i+1, len(match), w.c.pid, stdout)
			continue
		}
		m := textLine.FindStringSubmatch(match[0])
		if m == nil {
			t.Errorf("change %d: line does not start with a time:\n%q", i+1, match[0])
			continue
		}
		// The columns: op and object padded to 7 and 8, the description
		// to 52 and the actor to 29, each followed by two spaces.
		if want := fmt.Sprintf("%-7s %-8s %-52s  %-29s  %s", w.op, w.object, w.desc, actor, w.status); m[2] != want {
			t.Errorf("change %d:\n got  %q\n want %q", i+1, m[2], want)
		}
		if !w.c.inLocalClock(m[1]) {
			t.Errorf("change %d: time %s is outside the command's run, %s to %s", i+1, m[1],
				w.c.from.Format("15:04:05.000"), w.c.to.Format("15:04:05.000"))
		}
	}
	if len(lines) != len(wants) {
		t.Errorf("got %d lines, want %d:\n%s", len(lines), len(wants), stdout)
	}
	checkSummary(t, stderr, "3 changes by 3 processes (ip 3); 1 failed; 0 lost")
}

// inLocalClock reports whether a text line's local time of day (to the
// millisecond) lies within the command's run.
func (c change) inLocalClock(clock string) bool {
	for _, day := range []time.Time{c.from, c.to} {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05.000", day.Format("2006-01-02 ")+clock, time.Local)
		if err == nil && c.inWindow(tm) {
			return true
		}
	}
	return false
}

func TestTraceFilters(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	tests := []struct {
		name string
		args []string
		// do makes the changes and returns those the filter must let
		// through.
		do func(t *testing.T, ns *testnet.Netns) []expect
		// summary is the stderr summary: it counts what passed the filter.
		summary string
	}{{
		name: "op delete, dst",
		args: []string{"--op", "delete", "--dst", "198.51.0.0/16"},
		do: func(t *testing.T, ns *testnet.Netns) []expect {
			ip(ns, "route", "add", "198.51.100.0/24", "dev", "v0", "table", "100")
			ip(ns, "route", "add", "203.0.113.0/24", "dev", "v0", "table", "100")
			del := ip(ns, "route", "del", "198.51.100.0/24", "dev", "v0", "table", "100")
			ip(ns, "route", "del", "203.0.113.0/24", "dev", "v0", "table", "100")
			return []expect{{del, fields{"op": "delete", "object": "route", "dst": "198.51.100.0/24", "table": 100,
				"protocol": "boot", "oif": ns.V0, "dev": "v0", "errno": 0}}}
		},
		summary: "1 change by 1 process (ip 1); 0 lost",
	}, {
		name: "comm, object",
		args: []string{"--comm", "ip", "--object", "rule"},
		do: func(t *testing.T, ns *testnet.Netns) []expect {
			add := ip(ns, "rule", "add", "pref", "512", "from", "10.244.1.5", "lookup", "100")
			runAs(t, "rtip", ns, "rule", "add", "pref", "513", "from", "10.244.1.6", "lookup", "100")
			ip(ns, "route", "add", "198.51.100.0/24", "dev", "v0", "table", "100")
			del := ip(ns, "rule", "del", "pref", "512", "from", "10.244.1.5", "lookup", "100")
			return []expect{
				{add, fields{"op": "add", "object": "rule", "priority": 512, "src": "10.244.1.5/32", "table": 100}},
				{del, fields{"op": "delete", "object": "rule", "priority": 512, "src": "10.244.1.5/32", "table": 100, "errno": 0}},
			}
		},
		summary: "2 changes by 2 processes (ip 2); 0 lost",
	}, {
		name: "table main",
		args: []string{"--table", "main"},
		do: func(t *testing.T, ns *testnet.Netns) []expect {
			route := ip(ns, "route", "add", "198.51.100.0/24", "dev", "v0")
			ip(ns, "route", "add", "203.0.113.0/24", "dev", "v0", "table", "100")
			ip(ns, "rule", "add", "pref", "512", "from", "10.244.1.5", "lookup", "100")
			rule := ip(ns, "rule", "add", "pref", "513", "from", "10.244.1.6", "lookup", "main")
			return []expect{
				{route, fields{"op": "add", "object": "route", "dst": "198.51.100.0/24", "table": 254}},
				{rule, fields{"op": "add", "object": "rule", "priority": 513, "table": 254}},
			}
		},
		summary: "2 changes by 2 processes (ip 2); 0 lost",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := testnet.New(t)
			p := startTrace(t, ns, append([]string{"--output", "json"}, tt.args...)...)
			expects := tt.do(t, ns)
			stdout, stderr := p.stop()
			for i := range expects {
				expects[i].fields = merge(byIP(t, ns, stderr, expects[i].c), expects[i].fields)
			}
			lines := parseJSONLines(t, stdout)
			// The filter applies to the kernel's own changes too: none
			// of ns's may pass.
			for _, l := range lines {
				if fmt.Sprint(l["netns"]) == fmt.Sprint(ns.Inode) && l["origin"] == "kernel" {
					t.Errorf("a change by the kernel passed the filter: %s", l)
				}
			}
			checkJSON(t, lines, ns, expects...)
			checkSummary(t, stderr, tt.summary)
		})
	}
}

// result is a finished run of the binary.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// run runs the binary to its end; it must end within timeout.
func run(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("routetrace %s still running after %v\nstderr:\n%s", strings.Join(args, " "), timeout, r.stderr)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running routetrace %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func TestFlagErrors(t *testing.T) {
	tiertest.TierIndependent(t)
	tests := []struct {
		args []string
		want []string // in stderr: the flag, the value, what is accepted
		code int      // the exit status, where the command sets one (0: any but 0)
	}{
		{[]string{"trace", "--op", "nosuch"}, []string{`--op "nosuch"`, "add, replace, delete or flush"}, 0},
		{[]string{"trace", "--object", "link"}, []string{`--object "link"`, "route, rule or nexthop"}, 0},
		{[]string{"trace", "--family", "inet7"}, []string{`--family "inet7"`, "inet or inet6"}, 0},
		{[]string{"trace", "--dst", "notacidr"}, []string{`--dst "notacidr"`, "a CIDR like 10.244.0.0/16 or an address"}, 0},
		{[]string{"trace", "--table", "x"}, []string{`--table "x"`, "a number, main, local or default"}, 0},
		{[]string{"trace", "--pid", "init"}, []string{`--pid "init"`, "a process id"}, 0},
		{[]string{"trace", "--output", "xml"}, []string{`--output "xml"`, "text or json"}, 0},
		{[]string{"trace", "--color", "rainbow"}, []string{`--color "rainbow"`, "auto, always or never"}, 0},
		{[]string{"trace", "--attach", "bogus"}, []string{`--attach "bogus"`, "auto, fentry, kprobe or tracepoint"}, 0},
		{[]string{"bench", "--attach", "bogus"}, []string{`--attach "bogus"`, "auto, fentry, kprobe or tracepoint"}, 0},
		{[]string{"bench", "--n", "0"}, []string{"--n 0", "want 1 to"}, 0},
		{[]string{"bench", "--cases", "batch,nosuch"}, []string{`--cases "nosuch"`, "batch, flush, client, dd, udp"}, 0},
		{[]string{"bench", "--udp-count", "0"}, []string{"--udp-count 0", "at least 1"}, 0},
		{[]string{"bench", "--output", "xml"}, []string{`--output "xml"`, "text or json"}, 0},
		{[]string{"--log-level", "loud", "version"}, []string{"--log-level", "loud"}, 0},
		// Refused before the probe loads anything (it loaded and
		// detached every hook first: 14 s under TCG).
		{[]string{"probe", "--output", "yaml"}, []string{`--output "yaml"`, "want text or json"}, 2},
		{[]string{"probe", "--only", "bpf"}, []string{`--only "bpf"`, "networkd"}, 2},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := run(t, 10*time.Second, tt.args...)
			if r.code == 0 {
				t.Fatalf("exit status 0, want an error; stderr:\n%s", r.stderr)
			}
			if tt.code != 0 && r.code != tt.code {
				t.Errorf("exit status %d, want %d", r.code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
			if !strings.HasPrefix(r.stderr, "routetrace: ") {
				t.Errorf("stderr does not start with \"routetrace: \":\n%s", r.stderr)
			}
			if r.took > 5*time.Second {
				t.Errorf("took %v to reject a flag", r.took)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	// probe loads and verifies every hook's program once per tier: 3
	// minutes in an arm64 guest under TCG (Debian's 6.1, every hook on
	// kprobe after fentry is refused), seconds elsewhere.
	r := run(t, probeTimeout, "probe")
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	tiers := map[string]string{} // hook -> tier column
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			tiers[f[0]] = f[1]
		}
	}
	// The hooks that carry changes: each must get a tier, tier 3 at least.
	for _, hook := range [][]string{
		{"fib_table_insert"}, {"fib_table_delete"}, {"fib6_add"}, {"fib6_del"},
		{"fib_nl_newrule", "fib_newrule"}, {"fib_nl_delrule", "fib_delrule"},
		{"rtm_new_nexthop"}, {"rtm_del_nexthop"},
	} {
		i := slices.IndexFunc(hook, func(h string) bool { _, ok := tiers[h]; return ok })
		if i < 0 {
			t.Errorf("no row for %s", strings.Join(hook, " or "))
			continue
		}
		if tier := tiers[hook[i]]; !slices.Contains([]string{"fentry", "kprobe", "tracepoint"}, tier) {
			t.Errorf("%s: tier %q, want fentry, kprobe or tracepoint", hook[i], tier)
		}
	}
	lines := strings.Split(r.stdout, "\n")
	// A kernel without bpf_loop (5.10) can run neither tier 3 nor the
	// enforcer: probe names the missing helper on each line (it showed the
	// verifier's "number of funcs in func_info doesn't match" before).
	const noLoop = "not offered: the kernel lacks the bpf_loop helper (Linux 5.17)"
	loopLines := []string{
		"  socket capture    " + noLoop,
		"  syscall capture   " + noLoop,
		"  tier 3 (tracepoint): " + noLoop,
		"  block             " + noLoop,
	}
	if errors.Is(bpffeat.BPFLoop(), bpffeat.ErrNoBPFLoop) {
		for _, l := range loopLines {
			if !slices.Contains(lines, l) {
				t.Errorf("no line %q:\n%s", l, r.stdout)
			}
		}
		return
	}
	if strings.Contains(r.stdout, noLoop) {
		t.Errorf("bpf_loop is here, yet probe says %q:\n%s", noLoop, r.stdout)
	}
	for _, l := range []string{
		"tier 3 (request capture + rtnetlink notifications):",
		"  syscall capture   available (syscall tracepoints)",
	} {
		if !slices.Contains(lines, l) {
			t.Errorf("no line %q:\n%s", l, r.stdout)
		}
	}
	// Which capture tier 3 takes: the socket capture where tp_btf attaches.
	socket := slices.Contains(lines, "  --capture auto uses the socket capture")
	if !socket && !slices.Contains(lines, "  --capture auto uses the syscalls capture") {
		t.Errorf("no line saying which capture tier 3 uses:\n%s", r.stdout)
	}
	// Where a carrying hook falls back to tier 3 and tier 3 to the
	// syscall tracepoints, probe says what they cost every other process;
	// otherwise it says nothing of it.
	usesTier3 := slices.Contains(slices.Collect(maps.Values(tiers)), "tracepoint")
	const tax = "  the last resort, used here because fentry and kprobes are refused: enabling any syscall"
	if got := slices.Contains(lines, tax); got != (usesTier3 && !socket) {
		t.Errorf("tier 3 used: %v, socket capture %v, but the syscall tax line shown: %v:\n%s", usesTier3, socket, got, r.stdout)
	}
	// With the socket capture, probe says whether ioctls are named from
	// their notifications, which needs the sk_data_ready BTF tracepoint
	// (6.6+: the host's 6.18 and 6.12 in vmtest have it, 6.1 not).
	if usesTier3 && socket {
		named := slices.Contains(lines, "  ioctls (net-tools route, ifconfig) are named from their notifications (tp_btf sk_data_ready);")
		unnamed := slices.ContainsFunc(lines, func(l string) bool {
			return strings.HasPrefix(l, "  ioctls (net-tools route, ifconfig) are reported with an unknown actor unless")
		})
		if named == unnamed || named != kernelHasTracepoint(t, "sk_data_ready") {
			t.Errorf("ioctls named: line %v, unnamed: line %v; want exactly one, named where the kernel has sk_data_ready", named, unnamed)
		}
	}
	// A kernel that cannot make BPF trampolines for kernel functions (an
	// fentry attach of the test's own is refused with ENOTSUPP) refuses the
	// fentry tier and BPF LSM programs alike: probe must say so on every
	// hook's fentry refusal and on block mode's line, and nowhere else.
	noTrampoline := errors.Is(tiertest.FentryAttach("fib_table_lookup"), link.ErrNotSupported)
	const fentryWhy = "fentry: the kernel cannot attach fentry programs to kernel functions (no BPF trampoline on this architecture: " +
		"the attach failed with ENOTSUPP (524), ftrace direct calls are missing)"
	const blockWhy = "  block             UNAVAILABLE: LSM program refused: the kernel cannot attach BPF LSM programs (no BPF trampoline on this architecture: " +
		"attaching lsm/netlink_send failed with ENOTSUPP (524), ftrace direct calls are missing); enforce mode auto repairs instead"
	for _, hook := range []string{"fib_table_insert", "fib_table_delete", "fib6_add", "fib6_del"} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, hook+" ") })
		if i < 0 {
			continue // reported above
		}
		if got := strings.Contains(lines[i], fentryWhy); got != noTrampoline {
			t.Errorf("kernel without BPF trampolines: %v, but %s's row names that cause: %v:\n%s", noTrampoline, hook, got, lines[i])
		}
	}
	if got := slices.Contains(lines, blockWhy); got != noTrampoline {
		t.Errorf("kernel without BPF trampolines: %v, but block mode's line names that cause: %v", noTrampoline, got)
	}
	if t.Failed() {
		t.Logf("stdout:\n%s", r.stdout)
	}
	checkProbeJSON(t, tiers, lines)
}

// probeJSONEnv names a file holding `routetrace probe --output json` run
// on this kernel by the same binary: vmtest's guest runs it at boot for
// the README's kernel table, and TestProbe compares that one with its
// table rather than probing a third time (10-15 s under TCG).
const probeJSONEnv = "ROUTETRACE_PROBE_JSON"

// checkProbeJSON: --output json says what the table says (vmtest builds
// the README's kernel table from it), row by row.
func checkProbeJSON(t *testing.T, tiers map[string]string, textLines []string) {
	t.Helper()
	var out []byte
	if path := os.Getenv(probeJSONEnv); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", probeJSONEnv, err)
		}
		out = b
	} else {
		r := run(t, runTimeout, "probe", "--output", "json")
		if r.code != 0 {
			t.Fatalf("probe --output json: exit status %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
		out = []byte(r.stdout)
	}
	var got probeJSON
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("probe --output json is not JSON: %v\n%s", err, out)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	if release := unix.ByteSliceToString(uts.Release[:]); got.Kernel != release || !got.CanTrace {
		t.Errorf("kernel %q, can_trace %v; want %q, true", got.Kernel, got.CanTrace, release)
	}
	if len(got.Hooks) == 0 {
		t.Fatal("no hooks")
	}
	for _, h := range got.Hooks {
		want := tiers[h.Fn]
		if want == "-" {
			want = ""
		}
		if h.Tier != want {
			t.Errorf("hook %s: JSON tier %q, table %q", h.Fn, h.Tier, tiers[h.Fn])
		}
	}
	if !slices.Contains(textLines, "  --capture auto uses the "+got.Capture+" capture") {
		t.Errorf("JSON capture %q is not the table's", got.Capture)
	}
	block := "  block             available (BPF LSM: lsm/netlink_send and lsm/file_ioctl refuse protected changes)"
	if got.Enforce["block"] != "" {
		block = "  block             UNAVAILABLE: " + got.Enforce["block"]
	}
	if _, ok := got.Enforce["audit"]; !ok || !slices.Contains(textLines, block) {
		t.Errorf("enforce %v: no audit, or block is not the table's %q", got.Enforce, block)
	}
}

// kernelHasTracepoint says whether the kernel's BTF declares the BTF
// tracepoint name: what the kernel offers, read as routetrace's probe
// cannot be (it attaches), to check probe's own words.
func kernelHasTracepoint(t *testing.T, name string) bool {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("reading the kernel's BTF: %v", err)
	}
	var typedef *btf.Typedef
	return spec.TypeByName("btf_trace_"+name, &typedef) == nil
}

func TestHelp(t *testing.T) {
	tiertest.TierIndependent(t)
	for _, cmd := range []string{"trace", "probe", "bench"} {
		t.Run(cmd, func(t *testing.T) {
			r := run(t, 10*time.Second, cmd, "--help")
			if r.code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
			}
			want := []string{"routetrace " + cmd, "Example", "sudo routetrace " + cmd}
			if cmd == "trace" {
				want = append(want, "Exit status: 0 when nothing was lost; 3 when")
			}
			for _, w := range want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("help does not contain %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

// runBenchCmd runs the binary with args and the tier vmtest forces
// (ROUTETRACE_ATTACH), and requires exit status 0; a refused tier skips,
// or fails where vmtest expects it.
func runBenchCmd(t *testing.T, args ...string) result {
	t.Helper()
	mode := os.Getenv("ROUTETRACE_ATTACH")
	if mode != "" {
		args = append(args, "--attach", mode)
	}
	if c := os.Getenv("ROUTETRACE_CAPTURE"); c != "" {
		args = append(args, "--capture", c)
	}
	r := run(t, runTimeout, args...)
	if r.code != 0 {
		if (mode == "fentry" || mode == "kprobe") && isRefusal(r.stderr) {
			tiertest.Refused(t, mode, r.stderr)
		}
		t.Fatalf("exit status %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

func TestBenchJSON(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	// Small counts: this checks what bench reports, not the tracer's cost
	// (make bench measures that); it runs on every kernel, under TCG.
	const n, syscalls = 200, 2000
	r := runBenchCmd(t, "bench", "--n", strconv.Itoa(n), "--rounds", "1", "--dd-count", strconv.Itoa(syscalls),
		"--udp-count", strconv.Itoa(syscalls), "--output", "json")
	t.Logf("bench: %s", strings.TrimSpace(r.stdout)) // the ratios, for vmtest's logs
	lines := parseJSONLines(t, r.stdout)
	if len(lines) != 1 {
		t.Fatalf("stdout holds %d JSON lines, want 1:\n%s", len(lines), r.stdout)
	}
	res := lines[0]
	// n routes removed by each of ip -batch, ip route flush and the
	// netlink client, each deletion reported once by its process. Nothing
	// lost, except that tier 3 counts as truncated the captures of ip
	// route flush's requests that carry more messages than it copies,
	// though every deletion is reported (the identity fields check that):
	// the total must still be the sum of the counters.
	truncated, _ := jsonFloat(res["losses.truncated"])
	checkFields(t, "bench", res, fields{"n": n, "rounds": 1, "dd_count": syscalls, "udp_count": syscalls,
		// Three cases (batch, flush, client) three times: the tracer's
		// mode, the tracer with enrichment, and with enrichment and the
		// journal.
		"expected": 9 * n, "reported": 9 * n, "identity.correct": 9 * n, "identity.missing": 0, "identity.duplicated": 0,
		"identity.wrong_actor": 0, "identity.failed": 0, "identity.unexpected": 0,
		"lost": int(truncated), "notifications_lost": 0, "losses.ring_records": 0, "losses.overruns": 0,
		"losses.unconfirmed": 0, "losses.evicted": 0, "losses.read_errors": 0, "losses.listener_gaps": 0,
		"losses.unlistened": 0, "losses.kprobe_missed": 0, "attach": wantAttach(r.stderr),
		// Enrichment's modes: every deletion named with its command line.
		"enrich.named": 6 * n, "enrich.unnamed": 0, "enrich.process_misses": 0,
		// The journal's mode journaled each case's n adds and n deletions.
		"journal.records": 6 * n})
	if truncated != 0 {
		t.Logf("tier 3 counted %v truncated captures (ip route flush's batches)", truncated)
	}
	for _, k := range []string{"batch", "flush", "client", "dd", "udp"} {
		for _, f := range []string{k + "_off_s", k + "_on_s", "ratio_" + k, k + "_enrich_s", "ratio_" + k + "_enrich", k + "_journal_s", "ratio_" + k + "_journal"} {
			if v, err := jsonFloat(res[f]); err != nil || v <= 0 {
				t.Errorf("%s = %s, want a number > 0", f, show(res[f], res[f] != nil))
			}
		}
	}
	for _, f := range []string{"rss_mib", "rss_before_mib", "bpf.maps_mib", "bpf.maps", "enrich.ns_per_event", "enrich.events", "journal.bytes"} {
		if v, err := jsonFloat(res[f]); err != nil || v <= 0 {
			t.Errorf("%s = %s, want a number > 0", f, show(res[f], res[f] != nil))
		}
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", r.stderr)
	}
}

func jsonFloat(v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("not a number: %v", v)
	}
	return n.Float64()
}

// The bench's workload that deletes routes one request at a time reports
// the process that made them, and fails on what the kernel refused.
func TestBenchClient(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	client := func(op string, n int) (childReport, string) {
		t.Helper()
		r := run(t, runTimeout, "bench-client", "--netns", ns.Path, "--op", op, "--n", strconv.Itoa(n), "--oif", strconv.Itoa(int(ns.V0)))
		if r.code != 0 {
			t.Fatalf("bench-client --op %s: exit status %d\nstderr:\n%s", op, r.code, r.stderr)
		}
		var rep childReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("bench-client --op %s: %v\n%s", op, err, r.stdout)
		}
		return rep, r.stdout
	}
	if rep, out := client("add", 300); rep.Requests != 300 || rep.Failed != 0 || rep.Comm != "routetrace" || rep.Pid == 0 {
		t.Errorf("add: %s; want 300 requests, 0 failed, comm routetrace", out)
	}
	_, routes, err := ns.Exec("ip", "-4", "route", "show", "proto", "static")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(routes, "dev v0"); got != 300 || !strings.Contains(routes, "10.1.43.0/24 dev v0 scope link") {
		t.Errorf("after add: %d static routes, want 300 from 10.0.0.0/24 to 10.1.43.0/24:\n%s", got, routes)
	}
	if rep, out := client("del", 300); rep.Failed != 0 {
		t.Errorf("del: %s; want 0 failed", out)
	}
	if rep, out := client("del", 2); rep.Failed != 2 || rep.FirstError != "ESRCH" {
		t.Errorf("del of deleted routes: %s; want 2 failed, the first with ESRCH", out)
	}
}

func TestVersion(t *testing.T) {
	tiertest.TierIndependent(t)
	r := run(t, 10*time.Second, "version")
	if r.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "routetrace ") || !strings.HasSuffix(r.stdout, "\n") {
		t.Errorf("got %q, want \"routetrace VERSION (...)\\n\"", r.stdout)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if want := fmt.Sprintf(", %s/%s)", runtime.GOOS, runtime.GOARCH); len(lines) != 3 || !strings.HasSuffix(lines[0], want) {
		t.Fatalf("got %q, want three lines, the first naming %s", r.stdout, want)
	}
	if !strings.HasPrefix(lines[1], "commit      ") {
		t.Errorf("second line %q, want the commit", lines[1])
	}
	// The binary's BPF objects are this test's: built from the same tree.
	if want := "bpf objects sha256:" + bpfObjectsHash(); lines[2] != want || len(want) != len("bpf objects sha256:")+64 {
		t.Errorf("third line %q, want %q", lines[2], want)
	}
}
