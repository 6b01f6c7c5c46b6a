package netnswatch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/rtnl"
)

// 200 namespaces created and destroyed while a Watcher runs: half bind
// mounts (ip netns add), half held only by a process. Each must be
// reported once with a Path that opens it, and each reported gone.
func TestFollows200CreatedAndDestroyed(t *testing.T) {
	requireRoot(t)
	w := newWatcher(t, Options{Interval: 20 * time.Millisecond})
	ev := newEvents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, ev.onAdd, ev.onRemove) }()
	t.Cleanup(func() { cancel(); <-done })

	self := inodeOf(t, "/proc/self/ns/net")
	ev.waitFor(t, 5*time.Second, "our own namespace reported", func() (bool, string) {
		_, ok := ev.added[self]
		return ok, fmt.Sprintf("%d namespaces reported", len(ev.added))
	})

	names := netnsNames("bulk", 100)
	named := addNamed(t, names...)
	procs := startProcNetns(t, 100)
	// The tracer hints at namespaces while Run scans: every other one here,
	// at once. A namespace is reported once, by Hint or by Run.
	for _, p := range procs[:50] {
		if ns, isNew := w.Hint(p.pid, p.inode); isNew {
			ev.onAdd(ns)
		}
	}
	want := make(map[uint32]string, 200) // inode -> expected Origin
	for i, ino := range named {
		want[ino] = filepath.Join("/run/netns", names[i])
	}
	for _, p := range procs {
		want[p.inode] = fmt.Sprintf("/proc/%d/ns/net", p.pid)
	}
	if len(want) != 200 {
		t.Fatalf("%d distinct inodes for 200 namespaces", len(want))
	}

	ev.waitFor(t, 10*time.Second, "every namespace reported", func() (bool, string) {
		var missing []uint32
		for ino := range want {
			if _, ok := ev.added[ino]; !ok {
				missing = append(missing, ino)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of 200 missing, e.g. %v", len(missing), missing[:min(5, len(missing))])
	})
	ev.mu.Lock()
	for ino, origin := range want {
		ns := ev.added[ino]
		// A named namespace may be found through the ip process that
		// creates it, before the bind mount exists.
		if ns.Origin != origin && !(strings.HasPrefix(origin, "/run/netns/") && strings.HasPrefix(ns.Origin, "/proc/")) {
			t.Errorf("namespace %d: Origin %q, want %q", ino, ns.Origin, origin)
		}
		if !strings.HasPrefix(ns.Path, "/proc/self/fd/") {
			t.Errorf("namespace %d: Path %q, want a descriptor the watcher holds", ino, ns.Path)
		}
		if ev.removed[ino] != 0 {
			t.Errorf("namespace %d (%s) reported removed while alive", ino, origin)
		}
		if ev.adds[ino] != 1 {
			t.Errorf("namespace %d (%s) reported %d times", ino, origin, ev.adds[ino])
		}
		if !w.Known(ino) {
			t.Errorf("namespace %d reported but not Known", ino)
		}
	}
	for _, err := range ev.badPath {
		t.Error(err)
	}
	ev.mu.Unlock()
	// Still valid after the report, for as long as the namespace lives.
	for _, ns := range w.Namespaces() {
		if _, ours := want[ns.Inode]; ours {
			if err := checkPath(ns); err != nil {
				t.Error(err)
			}
		}
	}
	if t.Failed() {
		return
	}

	if err := delNamed(names...); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		p.kill()
	}
	ev.waitFor(t, 10*time.Second, "every namespace reported gone", func() (bool, string) {
		var missing []uint32
		for ino := range want {
			if ev.removed[ino] != 1 {
				missing = append(missing, ino)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of 200 not reported gone once, e.g. %v", len(missing), missing[:min(5, len(missing))])
	})
	for ino := range want {
		if w.Known(ino) {
			t.Errorf("namespace %d still Known after it was reported gone", ino)
		}
	}
	if ev.removed[self] != 0 || !w.Known(self) {
		t.Errorf("our own namespace: removed %d times, known %v; want never removed", ev.removed[self], w.Known(self))
	}
}

// The cases where existence, processes and mounts disagree.
func TestLiveness(t *testing.T) {
	requireRoot(t)
	w := newWatcher(t, Options{})
	if _, _, err := w.Scan(); err != nil {
		t.Fatal(err)
	}

	// A bind mount outside /run/netns, as container runtimes make, whose
	// process has exited: found through mountinfo, alive while mounted.
	mounted := startProcNetns(t, 1)[0]
	mountPoint := filepath.Join(t.TempDir(), "pod ns") // a space: mountinfo escapes it
	if err := os.WriteFile(mountPoint, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--bind", fmt.Sprintf("/proc/%d/ns/net", mounted.pid), mountPoint).CombinedOutput(); err != nil {
		t.Fatalf("mount --bind: %v: %s", err, out)
	}
	t.Cleanup(func() { unix.Unmount(mountPoint, unix.MNT_DETACH) })
	mounted.kill()

	// A named namespace with a process in it, whose name is deleted first.
	name := netnsNames("live", 1)
	both := addNamed(t, name...)[0]
	sleeper := child("ip", "netns", "exec", name[0], "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	// A namespace one of our own threads is in (as when the tracer opens
	// a socket there) besides a process: our thread must not keep it.
	withUs := startProcNetns(t, 1)[0]
	enterOnThread(t, fmt.Sprintf("/proc/%d/ns/net", withUs.pid))

	// A namespace only a thread (not its process's leader) is in.
	helper, threadNS, tid := startThreadHelper(t)

	added, removed, err := w.Scan()
	if err != nil {
		t.Fatal(err)
	}
	got := inodes(added)
	for ino, origin := range map[uint32]string{
		mounted.inode: mountPoint,
		both:          filepath.Join("/run/netns", name[0]),
		withUs.inode:  fmt.Sprintf("/proc/%d/ns/net", withUs.pid),
	} {
		if ns, ok := got[ino]; !ok || ns.Origin != origin {
			t.Errorf("namespace %d: reported %v as %+v, want Origin %q", ino, ok, ns, origin)
		}
	}
	// The thread's namespace is found on a thread scan; the second scan
	// here is not one, unless the first had not run yet.
	if _, ok := got[threadNS]; !ok {
		for range threadScanEvery {
			a, r, err := w.Scan()
			if err != nil {
				t.Fatal(err)
			}
			if contains(r, threadNS) {
				t.Fatalf("thread-only namespace %d reported removed", threadNS)
			}
			if ns, ok := inodes(a)[threadNS]; ok {
				got[threadNS] = ns
				break
			}
		}
	}
	if ns, ok := got[threadNS]; !ok || ns.Origin != fmt.Sprintf("/proc/%d/ns/net", tid) {
		t.Fatalf("thread-only namespace %d: reported %v as %+v, want Origin /proc/%d/ns/net", threadNS, ok, ns, tid)
	}
	if len(removed) != 0 {
		t.Logf("removed (others' namespaces): %v", removed)
	}

	// Scans that do not stat every thread must not lose the thread's
	// namespace, and check that one thread instead of scanning them all.
	for range 3 {
		periodic := w.scans%threadScanEvery == 0
		_, r, err := w.Scan()
		if err != nil || contains(r, threadNS) {
			t.Fatalf("thread-only namespace: removed %v, err %v", r, err)
		}
		// Other tests' namespaces going away make a scan confirm with
		// every thread; with nothing removed, none was needed.
		if !periodic && len(r) == 0 && w.procs.threads != 0 {
			t.Errorf("a scan stat'ed %d threads with only the thread-held namespace to confirm", w.procs.threads)
		}
	}

	mustRemove := func(what string, ino uint32) {
		t.Helper()
		_, r, err := w.Scan()
		if err != nil {
			t.Fatal(err)
		}
		if !contains(r, ino) {
			t.Errorf("%s: namespace %d not reported gone (removed %v)", what, ino, r)
		}
		if w.Known(ino) {
			t.Errorf("%s: namespace %d still Known", what, ino)
		}
	}
	mustKeep := func(what string, ino uint32) {
		t.Helper()
		_, r, err := w.Scan()
		if err != nil {
			t.Fatal(err)
		}
		if contains(r, ino) || !w.Known(ino) {
			t.Errorf("%s: namespace %d reported gone while alive", what, ino)
		}
	}

	if err := delNamed(name...); err != nil {
		t.Fatal(err)
	}
	mustKeep("name deleted, process still in it", both)
	sleeper.Process.Kill()
	sleeper.Wait()
	mustRemove("name deleted, then its process killed", both)

	mustKeep("bind mount only", mounted.inode)
	if err := unix.Unmount(mountPoint, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	mustRemove("bind mount removed", mounted.inode)

	withUs.kill()
	mustRemove("only our own thread left in it", withUs.inode)

	helper.Process.Kill()
	helper.Wait()
	mustRemove("thread-only, process killed", threadNS)
}

// enterOnThread moves a locked thread of ours into the namespace at path
// until the test ends, then back. The thread may be the main one, whose
// namespace /proc/self/ns/net shows: it must not stay there.
func enterOnThread(t *testing.T, path string) {
	t.Helper()
	entered, release, left := make(chan error), make(chan struct{}), make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			entered <- err
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		entered <- err
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		<-release
		// Left locked if this fails: the runtime then ends the thread.
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			left <- err
			return
		}
		runtime.UnlockOSThread()
		left <- nil
	}()
	if err := <-entered; err != nil {
		t.Fatalf("entering %s on a thread: %v", path, err)
	}
	t.Cleanup(func() {
		close(release)
		if err := <-left; err != nil {
			t.Errorf("leaving %s: %v", path, err)
		}
	})
}

// A short-lived process's namespace: Hint opens it while the process
// lives, the Path still works after it exited, and the next scan forgets
// it (the watcher's own descriptor does not keep it).
func TestHint(t *testing.T) {
	requireRoot(t)
	w := newWatcher(t, Options{})
	if _, _, err := w.Scan(); err != nil {
		t.Fatal(err)
	}
	procs := startProcNetns(t, 2)
	short, long := procs[0], procs[1]

	if _, ok := w.Hint(short.pid, long.inode); ok {
		t.Errorf("Hint followed namespace %d through pid %d, which is in %d", long.inode, short.pid, short.inode)
	}
	ns, ok := w.Hint(short.pid, short.inode)
	if !ok || ns.Inode != short.inode || ns.Origin != fmt.Sprintf("/proc/%d/ns/net", short.pid) {
		t.Fatalf("Hint(%d, %d) = %+v, %v", short.pid, short.inode, ns, ok)
	}
	if again, ok := w.Hint(short.pid, short.inode); ok || again != ns {
		t.Errorf("second Hint = %+v, %v; want %+v, false", again, ok, ns)
	}
	longNS, ok := w.Hint(long.pid, long.inode)
	if !ok {
		t.Fatalf("Hint(%d, %d) refused", long.pid, long.inode)
	}
	short.kill()
	if err := checkPath(ns); err != nil {
		t.Errorf("after its process exited: %v", err)
	}
	// What the tracer does with it: a notification socket in there.
	l, err := rtnl.Listen(ns.Path, 0)
	if err != nil {
		t.Fatalf("rtnl.Listen(%s) after its process exited: %v", ns.Path, err)
	}
	if l.Netns() != short.inode {
		t.Errorf("rtnl.Listen(%s) listens in namespace %d, want %d", ns.Path, l.Netns(), short.inode)
	}
	defer l.Close()

	added, removed, err := w.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := inodes(added)[long.inode]; ok {
		t.Errorf("Scan reported namespace %d again after Hint", long.inode)
	}
	if !contains(removed, short.inode) || w.Known(short.inode) {
		t.Errorf("short-lived namespace %d: removed %v, Known %v; want gone", short.inode, removed, w.Known(short.inode))
	}
	if contains(removed, long.inode) || !w.Known(long.inode) {
		t.Errorf("namespace %d of a live process reported gone", long.inode)
	}
	if err := checkPath(longNS); err != nil {
		t.Error(err)
	}
	if _, ok := w.Hint(short.pid, short.inode); ok {
		t.Errorf("Hint followed namespace %d through pid %d, which exited", short.inode, short.pid)
	}
}

// --netns narrows: only the named namespaces and our own are followed,
// a name deleted and created again is followed again.
func TestOnly(t *testing.T) {
	requireRoot(t)
	names := netnsNames("only", 2)
	named := addNamed(t, names...)
	a, b := named[0], named[1]
	c := startProcNetns(t, 1)[0]
	w := newWatcher(t, Options{Only: []string{names[0], fmt.Sprintf("/proc/%d/ns/net", c.pid)}})

	added, removed, err := w.Scan()
	if err != nil || len(removed) != 0 {
		t.Fatalf("first Scan: removed %v, err %v", removed, err)
	}
	self := inodeOf(t, "/proc/self/ns/net")
	want := map[uint32]string{self: "/proc/self/ns/net", a: filepath.Join("/run/netns", names[0]), c.inode: fmt.Sprintf("/proc/%d/ns/net", c.pid)}
	got := inodes(added)
	if len(got) != len(want) {
		t.Errorf("followed %v, want exactly %v", got, want)
	}
	for ino, origin := range want {
		if got[ino].Origin != origin {
			t.Errorf("namespace %d: %+v, want Origin %q", ino, got[ino], origin)
		}
	}

	// A process in b, not named: a Hint for it is refused.
	inB := child("ip", "netns", "exec", names[1], "sleep", "60")
	if err := inB.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inB.Process.Kill(); inB.Wait() })
	if ns, ok := w.Hint(uint32(inB.Process.Pid), b); ok || w.Known(b) {
		t.Errorf("Hint followed %+v, outside --netns", ns)
	}

	if err := delNamed(names[0]); err != nil {
		t.Fatal(err)
	}
	if _, removed, err = w.Scan(); err != nil || len(removed) != 1 || removed[0] != a {
		t.Errorf("after ip netns del %s: removed %v, err %v; want [%d]", names[0], removed, err, a)
	}
	a2 := addNamed(t, names[0])[0]
	added, _, err = w.Scan()
	if err != nil || len(added) != 1 || added[0].Inode != a2 {
		t.Errorf("after ip netns add %s again: added %+v, err %v; want inode %d", names[0], added, err, a2)
	}
}

func TestOnlyRejectsWhatIsNotANetworkNamespace(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"no-such-netns-for-netnswatch", "--netns no-such-netns-for-netnswatch: opening /run/netns/no-such-netns-for-netnswatch: no such file or directory (name one from `ip netns list` or give a path like /proc/PID/ns/net)"},
		{"/proc/self/ns/uts", "--netns /proc/self/ns/uts: /proc/self/ns/uts is not a network namespace (name one from `ip netns list` or give a path like /proc/PID/ns/net)"},
		{"/proc/self/status", "--netns /proc/self/status: /proc/self/status is not a network namespace (name one from `ip netns list` or give a path like /proc/PID/ns/net)"},
		{"", "--netns: empty name (name one from `ip netns list` or give a path like /proc/PID/ns/net)"},
	} {
		w, err := New(Options{Only: []string{tc.arg}})
		if err == nil {
			w.Close()
			t.Errorf("New(Only: %q) accepted it", tc.arg)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("New(Only: %q):\n got %s\nwant %s", tc.arg, err, tc.want)
		}
	}
}

// A Scan with nothing new allocates nothing, whatever the number of
// processes. Other tests on this machine may create namespaces or mounts
// meanwhile, so one clean measurement of several suffices.
func TestScanDoesNotAllocate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: without it, other users' processes cannot be stat'ed and a warning is logged")
	}
	w := newWatcher(t, Options{})
	for range 2 {
		if _, _, err := w.Scan(); err != nil {
			t.Fatal(err)
		}
	}
	var allocs []float64
	for range 5 {
		a := testing.AllocsPerRun(threadScanEvery, func() { w.Scan() })
		if a == 0 {
			return
		}
		allocs = append(allocs, a)
	}
	t.Errorf("allocations per Scan: %v (processes %d)", allocs, w.procs.processes)
}
