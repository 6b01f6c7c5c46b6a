package imagetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/testnet"
)

// What the test needs from its environment (make image-test sets them all).
const (
	envImage   = "ROUTETRACE_IMAGE"         // the image to test, e.g. routetrace:v0.3.0
	envRuntime = "ROUTETRACE_IMAGE_RUNTIME" // the command that runs it: "podman --runtime runc" (default podman)
	envVersion = "ROUTETRACE_IMAGE_VERSION" // the version and commit the image must report:
	envCommit  = "ROUTETRACE_IMAGE_COMMIT"  // the Makefile's VERSION and COMMIT
)

// nonRootUser is the Dockerfile's USER.
const nonRootUser = "65532:65532"

// The route the trace must report, in the test's own namespace.
const (
	testDst = "198.51.100.0/24"
	testGw  = "192.0.2.2"
)

type runtime struct {
	cmd   []string // the runtime command and its global flags
	image string
	extra []string // flags every run needs on this machine
}

func setup(t *testing.T) runtime {
	t.Helper()
	image := os.Getenv(envImage)
	if image == "" {
		t.Skipf("%s not set: `make image-test` builds the image and runs this test", envImage)
	}
	// Asked for by name: from here on a missing piece fails, it does not skip.
	if os.Geteuid() != 0 {
		t.Fatalf("%s is set but this test is not root: it runs privileged containers and makes network namespaces", envImage)
	}
	for _, v := range []string{envVersion, envCommit} {
		if os.Getenv(v) == "" {
			t.Fatalf("%s is set but %s is not: the test checks the version and commit the image reports against them", envImage, v)
		}
	}
	rt := runtime{cmd: strings.Fields(os.Getenv(envRuntime)), image: image}
	if len(rt.cmd) == 0 {
		rt.cmd = []string{"podman"}
	}
	if _, err := exec.LookPath(rt.cmd[0]); err != nil {
		t.Fatalf("container runtime %q: %v (make deps installs podman; %s names another)", rt.cmd[0], err, envRuntime)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2's ip: %v", err)
	}
	rt.extra = ulimitFlags(t, rt.cmd[0])
	return rt
}

// ulimitFlags works around podman 4.3 on a host whose root lacks
// CAP_SYS_RESOURCE (some sandboxes drop it from the bounding set): podman
// asks the OCI runtime for RLIMIT_NOFILE 1048576 and for an RLIMIT_NPROC
// above the 32768 it lowered its own to (seen with strace), and without
// CAP_SYS_RESOURCE neither can be raised: "crun: setrlimit `RLIMIT_NOFILE`:
// Operation not permitted". Asking for what the host already has works.
func ulimitFlags(t *testing.T, runtime string) []string {
	if filepath.Base(runtime) != "podman" {
		return nil
	}
	caps, err := effectiveCaps()
	if err != nil {
		t.Fatalf("reading capabilities: %v", err)
	}
	const capSysResource = 24
	if caps&(1<<capSysResource) != 0 {
		return nil
	}
	var nofile, nproc unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &nproc); err != nil {
		t.Fatal(err)
	}
	np := min(nproc.Max, 32768)
	t.Logf("no CAP_SYS_RESOURCE here: running containers with the host's RLIMIT_NOFILE (%d) and RLIMIT_NPROC %d", nofile.Max, np)
	return []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max), "--ulimit", fmt.Sprintf("nproc=%d:%d", np, np)}
}

func effectiveCaps() (uint64, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// rootFlags run routetrace as root with every privilege and the host's
// view of processes, cgroups, namespaces and pseudo filesystems: the
// Dockerfile's first example.
var rootFlags = []string{
	"--user", "0", "--privileged", "--pid", "host", "--cgroupns", "host",
	"-v", "/sys/fs/bpf:/sys/fs/bpf", "-v", "/sys/kernel/tracing:/sys/kernel/tracing",
	"-v", "/run/netns:/run/netns:rslave",
}

// nonRootFlags run it as the image's user, with no privilege but the
// capabilities its binary carries: the Dockerfile's second example.
var nonRootFlags = []string{
	"--cap-add", "BPF,PERFMON,NET_ADMIN,SYS_ADMIN", "--pid", "host",
	"-v", "/sys/fs/bpf:/sys/fs/bpf", "-v", "/run/netns:/run/netns:rslave",
}

// runArgs is `<runtime> run --rm --network host <flags> <image> <args>`.
func (rt runtime) runArgs(flags []string, args ...string) []string {
	a := append(append([]string{}, rt.cmd[1:]...), "run", "--rm", "--network", "host")
	a = append(append(append(a, rt.extra...), flags...), rt.image)
	return append(a, args...)
}

// run runs routetrace in the image and returns its stdout, stderr and exit status.
func (rt runtime) run(t *testing.T, flags []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, rt.cmd[0], rt.runArgs(flags, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// TestImage checks the image's metadata, then routetrace inside it.
func TestImage(t *testing.T) {
	rt := setup(t)
	version, commit := os.Getenv(envVersion), os.Getenv(envCommit)

	t.Run("metadata", func(t *testing.T) {
		out, err := exec.Command(rt.cmd[0], append(append([]string{}, rt.cmd[1:]...), "image", "inspect", rt.image)...).Output()
		if err != nil {
			t.Fatalf("inspecting %s: %v", rt.image, err)
		}
		var images []struct {
			Size   int64
			Config struct {
				User       string
				Entrypoint []string
				Cmd        []string
				Labels     map[string]string
			}
		}
		if err := json.Unmarshal(out, &images); err != nil || len(images) != 1 {
			t.Fatalf("image inspect %s: %v: %s", rt.image, err, out)
		}
		c := images[0].Config
		t.Logf("image %s: %.1f MB, user %s, entrypoint %q, cmd %q", rt.image, float64(images[0].Size)/1e6, c.User, c.Entrypoint, c.Cmd)
		if c.User != nonRootUser {
			t.Errorf("user %q, want %q (non-root, the Dockerfile's USER)", c.User, nonRootUser)
		}
		if strings.Join(c.Entrypoint, " ") != "/usr/local/bin/routetrace" || strings.Join(c.Cmd, " ") != "trace" {
			t.Errorf("entrypoint %q cmd %q, want [/usr/local/bin/routetrace] [trace]", c.Entrypoint, c.Cmd)
		}
		for k, want := range map[string]string{
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": commit,
			"org.opencontainers.image.source":   "https://github.com/routetrace/routetrace",
			"org.opencontainers.image.title":    "routetrace",
		} {
			if got := c.Labels[k]; got != want {
				t.Errorf("label %s = %q, want %q", k, got, want)
			}
		}
		// A static binary alone is about 60 MB; a shell, libc or the Go
		// toolchain would show here.
		if images[0].Size > 80e6 {
			t.Errorf("image is %.1f MB: more than the binary (~60 MB); what else went in?", float64(images[0].Size)/1e6)
		}
	})

	t.Run("version", func(t *testing.T) {
		stdout, stderr, code := rt.run(t, rootFlags, "version")
		if code != 0 {
			t.Fatalf("routetrace version: exit status %d\n%s%s", code, stdout, stderr)
		}
		rev, modified := strings.CutSuffix(commit, "-modified")
		if modified {
			rev += " (modified)"
		}
		for _, want := range []string{
			"routetrace " + version + " (",
			"commit      " + rev + "\n",
			"bpf objects sha256:",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("routetrace version: no %q in its output (the Makefile's VERSION=%s COMMIT=%s):\n%s", want, version, commit, stdout)
			}
		}
	})

	privilegesOK := regexp.MustCompile(`(?m)^privileges\s+ok$`)
	t.Run("probe/root", func(t *testing.T) {
		stdout, stderr, code := rt.run(t, rootFlags, "probe")
		if code != 0 || !privilegesOK.MatchString(stdout) {
			t.Fatalf("routetrace probe as root, privileged: exit status %d (want 0), want a line \"privileges  ok\":\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("probe/nonroot", func(t *testing.T) {
		// The user has no capability but its binary's file capabilities.
		stdout, stderr, code := rt.run(t, nonRootFlags, "probe")
		if code != 0 || !privilegesOK.MatchString(stdout) {
			t.Fatalf("routetrace probe as uid %s with the binary's file capabilities: exit status %d (want 0), want \"privileges  ok\":\n%s%s", nonRootUser, code, stdout, stderr)
		}
		// Without them in the container's bounding set the kernel refuses
		// to run the binary at all: its file capabilities carry the
		// effective bit, and such a file runs only with every one of them.
		stdout, stderr, code = rt.run(t, nil, "version")
		if code == 0 || !strings.Contains(stderr, "operation not permitted") {
			t.Fatalf("routetrace version without --cap-add: exit status %d, want non-zero and \"operation not permitted\" "+
				"(the kernel refuses a binary with file capabilities outside the bounding set; has setcap been lost?):\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("trace/root", func(t *testing.T) { traceRoute(t, rt, rootFlags) })
	t.Run("trace/nonroot", func(t *testing.T) { traceRoute(t, rt, nonRootFlags) })
}

// event is what the test reads of `trace --output json`'s lines.
type event struct {
	Op, Object, Dst, Gateway, Dev string
	Netns                         uint32
	Actor                         struct {
		Pid  uint32
		Comm string
	}
	Summary *struct {
		Changes   int
		LostTotal int `json:"lost_total"`
	}
}

// traceRoute runs `routetrace trace` in the image while this process adds
// and deletes a route in a namespace of its own, and checks that the
// trace reports both, with the ip process that made each.
func traceRoute(t *testing.T, rt runtime, flags []string) {
	n := testnet.New(t)
	ready := t.TempDir()
	if err := os.Chmod(ready, 0o777); err != nil { // the image's user writes there too
		t.Fatal(err)
	}
	name := fmt.Sprintf("routetrace-imagetest-%d-%d", os.Getpid(), time.Now().UnixNano())
	flags = append(append([]string{}, flags...), "--name", name, "-v", ready+":/ready")
	args := rt.runArgs(flags, "trace", "--output", "json", "--netns", n.Path, "--dst", testDst, "--ready-file", "/ready/ready")
	cmd := exec.Command(rt.cmd[0], args...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	lines := make(chan string, 64)
	done := make(chan struct{}) // closed once the runtime exited, waitErr set
	var waitErr error
	var all []string
	var mu sync.Mutex
	go func() {
		s := bufio.NewScanner(stdout)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			mu.Lock()
			all = append(all, s.Text())
			mu.Unlock()
			lines <- s.Text()
		}
		close(lines)
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			exec.Command(rt.cmd[0], append(append([]string{}, rt.cmd[1:]...), "rm", "-f", name)...).Run()
		}
	})
	fail := func(format string, a ...any) {
		t.Helper()
		mu.Lock()
		out := strings.Join(all, "\n")
		mu.Unlock()
		t.Fatalf("%s\ncommand: %s\nstdout:\n%s\nstderr:\n%s", fmt.Sprintf(format, a...), strings.Join(cmd.Args, " "), out, stderr.String())
	}

	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(ready, "ready")); err == nil {
			break
		}
		select {
		case <-done:
			fail("routetrace trace exited before attaching: %v", waitErr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			fail("routetrace trace did not attach: no ready file after 90 s")
		}
	}

	addPid := n.IP("route", "add", testDst, "via", testGw, "dev", "v0")
	delPid := n.IP("route", "del", testDst, "via", testGw, "dev", "v0")

	// Stop the tracer as a runtime would: SIGTERM, which the runtime's
	// signal proxy forwards. JSON lines to a pipe are buffered until exit,
	// so the test reads them all then; the tracer reports what the kernel
	// recorded before the signal.
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		fail("stopping routetrace trace: %v", err)
	}
	var events []event
	var summary *event
	timeout := time.After(30 * time.Second)
	for lines != nil {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			var ev event
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				fail("a line of trace --output json is not JSON: %v: %q", err, l)
			}
			if ev.Summary != nil {
				summary = &ev
			} else {
				events = append(events, ev)
			}
		case <-timeout:
			cmd.Process.Kill()
			fail("routetrace trace did not exit within 30 s of SIGTERM")
		}
	}
	<-done
	err = waitErr
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fail("routetrace trace: %v", err)
		}
		code = ee.ExitCode()
	}
	// 3: the run ended as asked but a loss counter is above zero, which a
	// busy machine can cause outside the test's namespace; the two changes
	// are checked one by one below.
	if code != 0 && code != 3 {
		fail("routetrace trace: exit status %d, want 0 (or 3: something lost)", code)
	}
	if code == 3 {
		t.Logf("routetrace trace exited 3 (something was lost): %s", lastLine(stderr.String()))
	}
	if summary == nil {
		fail("no summary line at the end of trace --output json")
	}

	for _, want := range []struct {
		op  string
		pid uint32
	}{{"add", addPid}, {"delete", delPid}} {
		found := false
		for _, ev := range events {
			if ev.Op != want.op || ev.Netns != n.Inode || ev.Dst != testDst {
				continue
			}
			found = true
			if ev.Object != "route" || ev.Gateway != testGw || ev.Dev != "v0" || ev.Actor.Comm != "ip" || ev.Actor.Pid != want.pid {
				fail("%s of %s in netns %d: got object %q gateway %q dev %q actor %s[%d], want route via %s dev v0 by ip[%d]",
					want.op, testDst, n.Inode, ev.Object, ev.Gateway, ev.Dev, ev.Actor.Comm, ev.Actor.Pid, testGw, want.pid)
			}
		}
		if !found {
			fail("no %s of route %s in netns %d (%s) in the trace", want.op, testDst, n.Inode, n.Name)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// syncBuffer is a bytes.Buffer the runtime's stderr copier and the test
// can use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
