package netnswatch

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadHelperEnv makes the test binary a helper process: one of its
// threads enters a network namespace of its own while its leader stays in
// the parent's, then it prints "INODE TID" and waits for stdin to close.
const threadHelperEnv = "NETNSWATCH_THREAD_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(threadHelperEnv) == "1" {
		threadHelper()
		return
	}
	os.Exit(m.Run())
}

func threadHelper() {
	go func() {
		// Never unlocked: the thread stays in its namespace for good.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fmt.Println("unshare:", err)
			os.Exit(1)
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			fmt.Println("stat:", err)
			os.Exit(1)
		}
		fmt.Println(st.Ino, unix.Gettid())
		select {}
	}()
	io.Copy(io.Discard, os.Stdin)
}

// startThreadHelper runs the helper and returns the inode of its thread's
// namespace and the thread's id.
func startThreadHelper(t testing.TB) (cmd *exec.Cmd, inode, tid uint32) {
	t.Helper()
	cmd = child(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), threadHelperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the thread helper: %v", err)
	}
	if _, err := fmt.Sscan(line, &inode, &tid); err != nil {
		t.Fatalf("thread helper said %q: %v", line, err)
	}
	return cmd, inode, tid
}

// child is a command killed with the test process if the test binary
// dies before its cleanups run (a timeout panic).
func child(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creating network namespaces and reading every process's ns/net needs CAP_SYS_ADMIN")
	}
	for _, c := range []string{"ip", "unshare", "sleep", "mount"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s (apt-get install iproute2 util-linux coreutils)", c)
		}
	}
}

func inodeOf(t testing.TB, path string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// checkPath opens ns.Path and checks that it is the namespace ns.Inode.
func checkPath(ns Namespace) error {
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("namespace %d (%s): opening %s: %w", ns.Inode, ns.Origin, ns.Path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if uint32(st.Ino) != ns.Inode {
		return fmt.Errorf("namespace %d (%s): %s opens namespace %d", ns.Inode, ns.Origin, ns.Path, st.Ino)
	}
	return nil
}

// procNetns is a process alone in a network namespace of its own.
type procNetns struct {
	cmd   *exec.Cmd
	pid   uint32
	inode uint32
}

func (p *procNetns) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// startProcNetns starts n `unshare -n sleep 60`, each in a new namespace,
// killed when the test ends, and waits until each has entered it.
func startProcNetns(t testing.TB, n int) []*procNetns {
	t.Helper()
	ours := inodeOf(t, "/proc/self/ns/net")
	procs := make([]*procNetns, n)
	for i := range procs {
		cmd := child("unshare", "-n", "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &procNetns{cmd: cmd, pid: uint32(cmd.Process.Pid)}
		t.Cleanup(p.kill)
		procs[i] = p
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		// unshare runs in our namespace until it has made its own.
		for {
			var st unix.Stat_t
			err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", p.pid), &st)
			if err == nil && uint32(st.Ino) != ours {
				p.inode = uint32(st.Ino)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d never entered a namespace of its own (%v)", p.pid, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return procs
}

// addNamed creates namespaces with `ip netns add` (one ip -batch for all),
// deleted when the test ends, and returns their inodes.
func addNamed(t testing.TB, names ...string) []uint32 {
	t.Helper()
	t.Cleanup(func() { delNamed(names...) })
	if err := ipBatch("netns add", names); err != nil {
		t.Fatal(err)
	}
	inodes := make([]uint32, len(names))
	for i, n := range names {
		inodes[i] = inodeOf(t, filepath.Join("/run/netns", n))
	}
	return inodes
}

// delNamed deletes named namespaces, ignoring those already gone.
func delNamed(names ...string) error { return ipBatch("netns del", names) }

func ipBatch(cmd string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", cmd, n)
	}
	c := exec.Command("ip", "-force", "-batch", "-")
	c.Stdin = strings.NewReader(b.String())
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -batch (%s ...): %v: %s", cmd, err, out)
	}
	return nil
}

// netnsNames returns n names unique to this test process.
func netnsNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("nsw-%d-%s%d", os.Getpid(), prefix, i)
	}
	return names
}

// events collects what Run reports, for a test to wait on.
type events struct {
	mu      sync.Mutex
	added   map[uint32]Namespace
	removed map[uint32]int // since the inode was last added
	adds    map[uint32]int // since the inode was last removed
	badPath []error
}

func newEvents() *events {
	return &events{added: make(map[uint32]Namespace), removed: make(map[uint32]int), adds: make(map[uint32]int)}
}

func (e *events) onAdd(ns Namespace) {
	// The Path must open the namespace at the moment it is handed out.
	err := checkPath(ns)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.added[ns.Inode] = ns
	// Namespace inodes are reused as soon as a namespace is freed (other
	// tests on this machine churn them): a removal before this add was of
	// an earlier namespace with the same inode.
	delete(e.removed, ns.Inode)
	e.adds[ns.Inode]++
	if err != nil {
		e.badPath = append(e.badPath, err)
	}
}

func (e *events) onRemove(ino uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removed[ino]++
	delete(e.adds, ino)
}

// waitFor polls cond (under the lock) until it holds or timeout passes.
func (e *events) waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e.mu.Lock()
		ok, detail := cond()
		e.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s: %s", timeout, what, detail)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLog sends a Watcher's log to the test's, shown with -v or on failure.
type testLog struct{ t testing.TB }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func newWatcher(t testing.TB, opts Options) *Watcher {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func inodes(nss []Namespace) map[uint32]Namespace {
	m := make(map[uint32]Namespace, len(nss))
	for _, ns := range nss {
		m[ns.Inode] = ns
	}
	return m
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
