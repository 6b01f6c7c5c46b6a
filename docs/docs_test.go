package docs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/jaegertest"
	"github.com/routetrace/routetrace/internal/testnet"
)

// The guides' commands are run, so that they cannot rot. A fenced block
// whose info string is "sh" is run: every such block of a guide, in order,
// in one bash (set -euo pipefail) as root, in a temporary directory with
// routetrace built from this tree first on PATH, its journal in a
// temporary state directory (ROUTETRACE_STATE_DIR), and, for the guides
// that say so in a "<!-- doctest: jaeger -->" comment, a real Jaeger whose
// addresses are in JAEGER_OTLP and JAEGER_URL. "sh norun" marks commands
// that need a cluster, systemd or an install (kubectl, systemctl): they
// are not run, but every routetrace command in them must be accepted by
// routetrace's flag parsing (run with --help added). Namespaces a guide
// makes are deleted after it, its background processes killed.

var routetrace string // built by TestMain

// guideTimeout bounds one guide's run: its commands take seconds, a wait
// for a tracer that never attaches would take forever.
const guideTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "routetrace-docs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	routetrace = filepath.Join(dir, "routetrace")
	if out, err := exec.Command("go", "build", "-o", routetrace, "../cmd/routetrace").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building routetrace: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// block is one fenced code block of a guide.
type block struct {
	file  string
	line  int // of the opening fence
	info  string
	lines []string
}

func (b block) run() bool   { return b.info == "sh" }
func (b block) norun() bool { return b.info == "sh norun" }
func (b block) where() string {
	return fmt.Sprintf("%s:%d", b.file, b.line)
}

// parseBlocks reads the fenced blocks of a Markdown file; an unclosed
// fence is an error naming its line.
func parseBlocks(path string) ([]block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		blocks []block
		cur    *block
		n      int
	)
	s := bufio.NewScanner(f)
	for s.Scan() {
		n++
		l := s.Text()
		if strings.HasPrefix(l, "```") {
			if cur == nil {
				cur = &block{file: path, line: n, info: strings.TrimSpace(strings.TrimPrefix(l, "```"))}
			} else {
				blocks = append(blocks, *cur)
				cur = nil
			}
			continue
		}
		if cur != nil {
			cur.lines = append(cur.lines, l)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: code block never closed", path, cur.line)
	}
	return blocks, s.Err()
}

func guides(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("*.md")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no guides in docs/ (%v)", err)
	}
	return paths
}

// TestGuideCommands runs each guide's sh blocks.
func TestGuideCommands(t *testing.T) {
	testnet.RequireRoot(t)
	for _, path := range guides(t) {
		blocks, err := parseBlocks(path)
		if err != nil {
			t.Fatal(err)
		}
		var runnable []block
		for _, b := range blocks {
			if b.run() {
				runnable = append(runnable, b)
			}
		}
		if len(runnable) == 0 {
			continue
		}
		t.Run(strings.TrimSuffix(path, ".md"), func(t *testing.T) {
			raw, _ := os.ReadFile(path)
			runGuide(t, runnable, strings.Contains(string(raw), "<!-- doctest: jaeger -->"))
		})
	}
}

func runGuide(t *testing.T, blocks []block, withJaeger bool) {
	work := t.TempDir()
	repo, _ := filepath.Abs("..")
	// The guides name the repository's files (deploy/...) as a clone has them.
	for _, d := range []string{"deploy"} {
		if err := os.Symlink(filepath.Join(repo, d), filepath.Join(work, d)); err != nil {
			t.Fatal(err)
		}
	}
	// The guides say sudo; the test is root already. A program, not a
	// shell function: `sudo routetrace trace &` must leave $! the tracer's
	// pid, for the guide's kill -INT to reach it (a background subshell
	// ignores SIGINT).
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte("#!/bin/sh\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"PATH="+filepath.Dir(routetrace)+":"+bin+":"+os.Getenv("PATH"),
		"ROUTETRACE_STATE_DIR="+t.TempDir(),
		"NO_COLOR=1",
	)
	if withJaeger {
		j := jaegertest.Start(t, jaegertest.Options{})
		env = append(env, "JAEGER_OTLP="+j.OTLPGRPC, "JAEGER_URL="+j.QueryURL)
	}
	netnsBefore := netnsList(t)
	t.Cleanup(func() {
		for _, ns := range netnsList(t) {
			if !slices.Contains(netnsBefore, ns) {
				exec.Command("ip", "netns", "del", ns).Run()
			}
		}
	})

	// One script: the guide's blocks in order, each announced, so that a
	// failure names the block (file:line) and the command.
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	script.WriteString("trap 'echo \"DOCTEST-FAILED: $BASH_COMMAND (exit $?)\"' ERR\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo 'DOCTEST-BLOCK %d %s'\n", i, b.where())
		script.WriteString(strings.Join(b.lines, "\n") + "\n")
	}
	script.WriteString("echo DOCTEST-DONE\n")

	ctx, cancel := context.WithTimeout(context.Background(), guideTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir, cmd.Env = work, env
	// Its own process group: what a guide leaves in the background goes
	// with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: a background process the guide left running
	// must not keep the test waiting for its end of the output.
	logPath := filepath.Join(t.TempDir(), "guide.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	logFile.Close()
	raw, _ := os.ReadFile(logPath)
	text := string(raw)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(text), "DOCTEST-DONE") {
		failed := "?"
		if i := strings.LastIndex(text, "DOCTEST-BLOCK "); i >= 0 {
			failed = strings.Fields(text[i:])[2]
		}
		t.Fatalf("the guide's block at %s failed (%v); output:\n%s", failed, err, text)
	}
	t.Logf("output:\n%s", text)
}

func netnsList(t *testing.T) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// TestGuideCommandsParse: every routetrace command in a guide, run or
// not, is accepted by routetrace's own flag parsing.
func TestGuideCommandsParse(t *testing.T) {
	for _, path := range guides(t) {
		blocks, err := parseBlocks(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if !b.run() && !b.norun() {
				continue
			}
			for i, cmdline := range routetraceCommands(b.lines) {
				args := append(cmdline, "--help")
				out, err := exec.Command(routetrace, args...).CombinedOutput()
				if err != nil {
					t.Errorf("%s (command %d): routetrace %s: %v\n%s", b.where(), i+1, strings.Join(cmdline, " "), err, out)
				}
			}
		}
	}
}

// routetraceCommands finds the routetrace invocations in a block's lines
// (joined at trailing backslashes): the word routetrace where a command
// starts (first, or after sudo, VAR=value, --, &&, ||, ;, | or ( ), and
// the words after it up to a pipe, redirect, ';', '&' or comment, quotes
// removed; not "kubectl -n routetrace" or "install ... routetrace DEST".
// Words with shell expansions keep them: they are flag values, which
// --help does not read.
func routetraceCommands(lines []string) [][]string {
	var out [][]string
	joined := strings.ReplaceAll(strings.Join(lines, "\n"), "\\\n", " ")
	for _, l := range strings.Split(joined, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		words := strings.Fields(l)
		for i, w := range words {
			if w != "routetrace" || !commandStart(words[:i]) {
				continue
			}
			var cmd []string
			for _, w := range words[i+1:] {
				if strings.ContainsAny(w[:1], "|>&;#<") || strings.HasPrefix(w, "2>") {
					break
				}
				cmd = append(cmd, strings.Trim(w, `'"`))
			}
			if len(cmd) > 0 {
				out = append(out, cmd)
			}
		}
	}
	return out
}

// commandStart reports whether the word after before starts a command.
func commandStart(before []string) bool {
	if len(before) == 0 {
		return true
	}
	prev := before[len(before)-1]
	switch prev {
	case "sudo", "--", "&&", "||", ";", "|", "(", "then", "do", "exec":
		return true
	}
	return strings.Contains(prev, "=") && !strings.HasPrefix(prev, "-") && commandStart(before[:len(before)-1])
}

func TestRoutetraceCommands(t *testing.T) {
	got := routetraceCommands([]string{
		"sudo routetrace trace --netns demo --output json > live.jsonl 2> trace.log &",
		"routetrace history --op delete \\",
		"  --dst 10.244.0.0/16 | grep x",
		"# routetrace not this",
		"ip route show",
		"OTEL_X=1 routetrace why '10.244.1.5'",
		"kubectl -n routetrace rollout status daemonset/routetrace",
		"sudo install -m 0755 routetrace /usr/local/bin/routetrace",
		"kubectl -n routetrace exec ds/routetrace -- routetrace history --since 1h",
	})
	want := [][]string{
		{"trace", "--netns", "demo", "--output", "json"},
		{"history", "--op", "delete", "--dst", "10.244.0.0/16"},
		{"why", "10.244.1.5"},
		{"history", "--since", "1h"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routetraceCommands = %q, want %q", got, want)
	}
}

// TestTroubleshootingCoversProbe: every line label and hook `routetrace
// probe` prints on this machine is explained in troubleshooting.md.
func TestTroubleshootingCoversProbe(t *testing.T) {
	testnet.RequireRoot(t)
	out, err := exec.Command(routetrace, "probe").CombinedOutput()
	if err != nil {
		t.Logf("routetrace probe: %v (its lines are still checked)", err)
	}
	guide, err := os.ReadFile("troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	labels := probeLabels(string(out))
	if len(labels) < 20 {
		t.Fatalf("only %d labels found in probe's output (the parser is out of date?):\n%s", len(labels), out)
	}
	for _, l := range labels {
		if !strings.Contains(string(guide), "`"+l+"`") {
			t.Errorf("troubleshooting.md does not explain probe's %q line", l)
		}
	}
}

var (
	// A label: up to two spaces of indent, words, then two or more spaces.
	probeLabel = regexp.MustCompile(`^ {0,2}([A-Za-z][A-Za-z0-9' ]*[A-Za-z0-9]) {2,}\S`)
	// A hook row: the function, then its tier.
	probeHook = regexp.MustCompile(`^([a-z0-9_]+) +(fentry|kprobe|tracepoint|-) `)
)

func probeLabels(out string) []string {
	var labels []string
	for _, l := range strings.Split(out, "\n") {
		if m := probeHook.FindStringSubmatch(l); m != nil {
			labels = append(labels, m[1])
		} else if m := probeLabel.FindStringSubmatch(l); m != nil && !strings.HasPrefix(m[1], "HOOK") {
			labels = append(labels, m[1])
		}
	}
	if strings.Contains(out, "\nring buffer ") {
		labels = append(labels, "ring buffer")
	}
	return labels
}
