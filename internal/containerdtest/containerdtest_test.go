package containerdtest

import (
	"net"
	"os"
	"path/filepath"
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
	t.Run("run", func(t *testing.T) {
		r = Start(t)
		pod = r.RunPod(t, PodSpec{Name: "left", Namespace: "rt-test", Labels: map[string]string{"app": "x"}})
		r.RunContainer(t, pod, "c1")
		// A second pod is not removed by the test: the cleanup must do it.
		r.RunContainer(t, r.RunPod(t, PodSpec{}), "c2")
		if len(r.Shims()) == 0 {
			t.Errorf("no shim found for %s while pods run", r.sock)
		}
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
	if err := unix.Kill(r.cmd.Process.Pid, 0); err == nil {
		t.Errorf("containerd %d still runs", r.cmd.Process.Pid)
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
	if mps := r.Mounts(); len(mps) > 0 {
		t.Errorf("mounts left: %v", mps)
	}
	for _, d := range []string{r.stateDir, r.tmp, filepath.Dir(r.sock)} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s is left", d)
		}
	}
}
