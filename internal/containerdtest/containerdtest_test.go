package containerdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A process in a container with NET_ADMIN changes its own pod's routes, in
// the pod's network namespace and nowhere else: what the actor tests build
// on.
func TestContainerDeletesPodRoute(t *testing.T) {
	r := Start(t)
	pod := r.RunPod(t, PodSpec{Name: "actor", Namespace: "rt-test"})
	ctr := r.RunContainer(t, pod, "deleter")

	// busybox's ip lists every route whatever the selector: pick the lines.
	defaults := func() []string {
		t.Helper()
		out, err := r.Exec(t, ctr, "ip", "route")
		if err != nil {
			t.Fatal(err)
		}
		var d []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "default ") {
				d = append(d, strings.TrimSpace(l))
			}
		}
		return d
	}
	if d := defaults(); len(d) != 1 || !strings.HasPrefix(d[0], "default via ") || !strings.Contains(d[0], "dev eth0") {
		t.Fatalf("the pod's default routes: %q, want one: default via <gateway> dev eth0", d)
	}
	if _, err := r.Exec(t, ctr, "ip", "route", "del", "default"); err != nil {
		t.Fatal(err)
	}
	if d := defaults(); len(d) != 0 {
		t.Fatalf("after ip route del default in the container: %q, want no default route", d)
	}
	// A command that fails says so, with its stderr.
	if _, err := r.Exec(t, ctr, "ip", "route", "del", "default"); err == nil || !strings.Contains(err.Error(), "exited with") {
		t.Errorf("deleting the default route twice: %v, want an exit status", err)
	}

	// Seen from the host through NetnsPath: the pod's namespace lost it.
	ns, err := netns.GetFromPath(pod.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0" {
			t.Errorf("the pod's namespace still has a default route: %v", rt)
		}
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range addrs {
		found = found || a.IP.Equal(net.IP(pod.IP.AsSlice()))
	}
	if !found {
		t.Errorf("%s is not the namespace of the pod with %v: addresses %v", pod.NetnsPath, pod.IP, addrs)
	}
	// The container's first process lives in that namespace.
	pid := r.ContainerPID(t, ctr)
	var podNS, ctrNS unix.Stat_t
	if err := unix.Stat(pod.NetnsPath, &podNS); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &ctrNS); err != nil {
		t.Fatal(err)
	}
	if podNS.Ino != ctrNS.Ino {
		t.Errorf("container pid %d is in netns %d, the pod's is %d", pid, ctrNS.Ino, podNS.Ino)
	}
	// The host's route to the pod is untouched.
	if dev, err := hostDevice(pod.IP); err != nil || dev != pod.HostVeth {
		t.Errorf("host route to %v: dev %q, %v; want dev %s", pod.IP, dev, err, pod.HostVeth)
	}
}

// After the harness's cleanup nothing of its run is left: no containerd,
// no shim, no container process, no veth or route of the pods' subnet, no
// network namespace, no mount, no cgroup, no directory.
func TestHarnessLeavesNothing(t *testing.T) {
	var r *Runtime
	var pod *Pod
	var shimSockets []string
	t.Run("run", func(t *testing.T) {
		r = Start(t)
		pod = r.RunPod(t, PodSpec{Name: "left", Namespace: "rt-test", Labels: map[string]string{"app": "x"}})
		r.RunContainer(t, pod, "c1")
		// A second pod is not removed by the test: the cleanup must do it.
		r.RunContainer(t, r.RunPod(t, PodSpec{}), "c2")
		if len(r.Shims()) == 0 {
			t.Errorf("no shim found for %s while pods run", r.sock)
		}
		if len(runProcesses(r)) < 2 {
			t.Errorf("containerd and its shims not found while pods run")
		}
		shimSockets = shimSocketsOf(r)
		if len(r.CgroupDirs()) == 0 {
			t.Errorf("no cgroup %s while pods run", r.cgroupParent)
		}
		if links, _ := r.Links(); len(links) != 2 {
			t.Errorf("%d links hold addresses of %v while two pods run, want 2", len(links), r.subnet)
		}
	})
	if r == nil || pod == nil {
		t.Skip("the run was skipped")
	}
	if pids := runProcesses(r); len(pids) > 0 {
		t.Errorf("processes of this run left (containerd, shims): %v", pids)
	}
	for _, s := range shimSockets {
		if _, err := os.Stat(s); err == nil {
			t.Errorf("shim socket %s left", s)
		}
	}
	if pids := r.Shims(); len(pids) > 0 {
		t.Errorf("shims of %s left: %v", r.sock, pids)
	}
	if dirs := r.CgroupDirs(); len(dirs) > 0 {
		t.Errorf("cgroups left: %v", dirs)
	}
	links, routes := r.Links()
	for _, l := range links {
		t.Errorf("link %s with an address of %v left", l.Attrs().Name, r.subnet)
	}
	for _, rt := range routes {
		t.Errorf("route into %v left: %v", r.subnet, rt)
	}
	if _, err := netlink.LinkByName(pod.HostVeth); err == nil {
		t.Errorf("the pod's host veth %s is left", pod.HostVeth)
	}
	if _, err := os.Stat(pod.NetnsPath); err == nil {
		t.Errorf("the pod's netns %s is left", pod.NetnsPath)
	}
	if files := r.CNICacheFiles(); len(files) > 0 {
		t.Errorf("CNI cached results left: %v", files)
	}
	if mps := r.Mounts(); len(mps) > 0 {
		t.Errorf("mounts left: %v", mps)
	}
	for _, d := range []string{r.stateDir, r.tmp, filepath.Dir(r.sock)} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s is left", d)
		}
	}
}

// When containerd dies mid-test (here: SIGKILL) nothing can be removed
// through CRI; the cleanup removes the shims, the containers' processes,
// mounts, network namespaces, veths and routes by force.
func TestHarnessCleansUpAfterContainerdDies(t *testing.T) {
	var r *Runtime
	var pod *Pod
	var containerPids, shimSockets []string
	t.Run("run", func(t *testing.T) {
		r = Start(t)
		pod = r.RunPod(t, PodSpec{Name: "orphan", Namespace: "rt-test"})
		r.RunContainer(t, pod, "c1")
		for _, d := range r.CgroupDirs() {
			if strings.HasSuffix(filepath.Dir(d), "/pids") || filepath.Base(filepath.Dir(d)) == "pids" {
				filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
					if err == nil && e.Name() == "cgroup.procs" {
						b, _ := os.ReadFile(p)
						containerPids = append(containerPids, strings.Fields(string(b))...)
					}
					return nil
				})
			}
		}
		shimSockets = shimSocketsOf(r)
		if len(r.CNICacheFiles()) == 0 {
			t.Errorf("no CNI cached result found for sandbox %s while it runs", pod.SandboxID)
		}
		r.expectDead = true
		r.cmd.Process.Kill()
		<-r.exited
	})
	if r == nil || pod == nil {
		t.Skip("the run was skipped")
	}
	if len(containerPids) < 2 {
		t.Errorf("found %d processes in the pod's cgroups before the kill, want the pause and c1's", len(containerPids))
	}
	for _, p := range containerPids {
		if b, err := os.ReadFile("/proc/" + p + "/cmdline"); err == nil && len(b) > 0 {
			t.Errorf("container process %s left: %q", p, b)
		}
	}
	if pids := runProcesses(r); len(pids) > 0 {
		t.Errorf("processes of this run left (containerd, shims): %v", pids)
	}
	if len(shimSockets) == 0 {
		t.Errorf("no shim socket found while the pod ran")
	}
	for _, s := range shimSockets {
		if _, err := os.Stat(s); err == nil {
			t.Errorf("shim socket %s left", s)
		}
	}
	if dirs := r.CgroupDirs(); len(dirs) > 0 {
		t.Errorf("cgroups left: %v", dirs)
	}
	links, routes := r.Links()
	if len(links)+len(routes) > 0 {
		t.Errorf("links %v and routes %v of %v left", links, routes, r.subnet)
	}
	if _, err := os.Stat(pod.NetnsPath); err == nil {
		t.Errorf("the pod's netns %s is left", pod.NetnsPath)
	}
	if files := r.CNICacheFiles(); len(files) > 0 {
		t.Errorf("CNI cached results left: %v", files)
	}
	if mps := r.Mounts(); len(mps) > 0 {
		t.Errorf("mounts left: %v", mps)
	}
	for _, d := range []string{r.stateDir, r.tmp} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s is left", d)
		}
	}
}

// runProcesses are the live processes whose command line names this run's
// socket or config: containerd and its shims.
func runProcesses(r *Runtime) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || zombie(pid) {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(b, []byte(r.sock)) || bytes.Contains(b, []byte(r.configPath)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shimSocketsOf are the sockets of the shims serving r's tasks.
func shimSocketsOf(r *Runtime) []string {
	var socks []string
	files, _ := filepath.Glob(filepath.Join(r.stateDir, "state", "io.containerd.runtime.v2.task", "k8s.io", "*", "address"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		socks = append(socks, strings.TrimPrefix(strings.TrimSpace(string(b)), "unix://"))
	}
	return socks
}

// A containerd that cannot start fails Start with its log in the error.
func TestStartFailureShowsLog(t *testing.T) {
	if why := Requirements(); why != "" {
		t.Skip(why)
	}
	dir := t.TempDir()
	r := &Runtime{tmp: dir, stateDir: dir, sock: filepath.Join(dir, "c.sock"),
		configPath: filepath.Join(dir, "config.toml"), logPath: filepath.Join(dir, "containerd.log")}
	os.WriteFile(r.configPath, []byte("version = 2\nroot = [not toml\n"), 0o644)
	err := r.startContainerd()
	if err == nil {
		r.cmd.Process.Kill()
		t.Fatal("containerd started with a broken config")
	}
	if !strings.Contains(err.Error(), "containerd exited before creating "+r.sock) || !strings.Contains(err.Error(), "containerd's log") || !strings.Contains(err.Error(), "toml") {
		t.Errorf("error %q: want the exit and containerd's log about the config", err)
	}
}

func TestMissingToolSkipReason(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the root check comes first")
	}
	t.Setenv("PATH", t.TempDir())
	if why := Requirements(); !strings.Contains(why, "needs containerd in PATH") || !strings.Contains(why, "make deps") {
		t.Errorf("Requirements() without containerd in PATH = %q", why)
	}
}
