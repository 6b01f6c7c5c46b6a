// Package containerdtest runs a real containerd for tests: its own root,
// state and socket, the CRI plugin with the native snapshotter, real pods
// in their own network namespaces through the ptp CNI plugin (a veth and a
// /32 route on the host for each pod), and images built here from
// busybox-static, since nothing can be pulled. Everything it starts,
// mounts or creates is gone when the test ends.
package containerdtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"
)

// NetworkName is the CNI network the pods join.
const NetworkName = "routetrace-test"

const (
	cniBinDir   = "/usr/lib/cni"
	callTimeout = 30 * time.Second
	startWait   = 15 * time.Second
)

// Runtime is a running containerd with its CRI plugin.
type Runtime struct {
	sock         string // the gRPC socket's path
	stateDir     string // /run/rt-ctd-<id>: the socket and containerd's state
	root         string // containerd's root, under t.TempDir()
	tmp          string
	configPath   string
	logPath      string
	subnet       netip.Prefix // the pods' addresses, 10.199.<n>.0/24
	cgroupParent string       // /rt-ctd-<id> in every cgroup hierarchy
	cmd          *exec.Cmd
	exited       chan struct{}
	subnetLock   *os.File
	expectDead   bool // a test killed containerd: its cleanup is by force

	rs internalapi.RuntimeService
	is internalapi.ImageManagerService

	mu         sync.Mutex
	netnss     map[string]bool // netns paths of the pods made here
	sandboxIDs map[string]bool // every sandbox RunPod made

	// StartTime is how long containerd took to answer CRI calls with its
	// network ready; ImportTime how long building and importing the images
	// took.
	StartTime, ImportTime time.Duration
}

// quiet is a context whose klog logger discards: the CRI client logs every
// failed call, and the harness reports its failures itself.
func quiet(ctx context.Context) context.Context {
	return klog.NewContext(ctx, logr.Discard())
}

// Requirements returns why the harness cannot run here, "" if it can.
func Requirements() string {
	if os.Geteuid() != 0 {
		return "needs root to run containerd, runc and CNI plugins"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("needs %s in PATH (make deps installs containerd, runc and containernetworking-plugins)", bin)
		}
	}
	for _, p := range []string{"ptp", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			return fmt.Sprintf("needs the CNI plugin %s/%s (make deps installs containernetworking-plugins)", cniBinDir, p)
		}
	}
	if _, err := findBusybox(); err != nil {
		return err.Error()
	}
	return ""
}

// Start runs containerd for t, with the images imported. It skips t when
// not root or when containerd, runc, the CNI plugins or busybox-static are
// missing. Everything is torn down when t ends.
func Start(t testing.TB) *Runtime {
	t.Helper()
	if why := Requirements(); why != "" {
		t.Skip(why)
	}
	id := randHex(4)
	r := &Runtime{
		tmp:          t.TempDir(), // removed after the cleanup below
		stateDir:     "/run/rt-ctd-" + id,
		cgroupParent: "/rt-ctd-" + id,
		netnss:       map[string]bool{},
		sandboxIDs:   map[string]bool{},
	}
	r.sock = filepath.Join(r.stateDir, "c.sock")
	r.root = filepath.Join(r.tmp, "root")
	r.configPath = filepath.Join(r.tmp, "config.toml")
	r.logPath = filepath.Join(r.tmp, "containerd.log")
	if err := os.MkdirAll(r.stateDir, 0o700); err != nil {
		t.Fatalf("creating containerd's state directory: %v", err)
	}
	t.Cleanup(func() { r.cleanup(t) })

	var err error
	if r.subnet, r.subnetLock, err = lockSubnet(); err != nil {
		t.Fatal(err)
	}
	if err := r.writeConfig(); err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	if err := r.startContainerd(); err != nil {
		t.Fatal(err)
	}
	r.StartTime = time.Since(t0)

	t0 = time.Now()
	if err := r.importImages(); err != nil {
		t.Fatal(err)
	}
	r.ImportTime = time.Since(t0)
	t.Logf("containerd %s: started in %v, images imported in %v, pods in %v", r.sock, r.StartTime.Round(time.Millisecond), r.ImportTime.Round(time.Millisecond), r.subnet)
	return r
}

// Endpoint is the CRI endpoint: unix:// and the socket's path.
func (r *Runtime) Endpoint() string { return "unix://" + r.sock }

// Socket is the path of containerd's gRPC socket.
func (r *Runtime) Socket() string { return r.sock }

// Subnet is the range the pods' addresses come from.
func (r *Runtime) Subnet() netip.Prefix { return r.subnet }

// CNIConfDir is the directory of the run's CNI network configuration (a
// ptp + host-local conflist), as /etc/cni/net.d is on a node.
func (r *Runtime) CNIConfDir() string { return filepath.Join(r.tmp, "net.d") }

// RuntimeService is the CRI client the harness uses.
func (r *Runtime) RuntimeService() internalapi.RuntimeService { return r.rs }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockSubnet picks a 10.199.<n>.0/24 that no other run holds (a flock on a
// file per subnet, released when the process dies) and that no route on
// the host touches.
func lockSubnet() (netip.Prefix, *os.File, error) {
	dir := "/run/rt-ctd-subnets"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return netip.Prefix{}, nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, nil, fmt.Errorf("listing host routes: %w", err)
	}
	for _, n := range mrand.Perm(256) {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 199, byte(n), 0}), 24)
		if overlapsRoute(p, routes) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(n)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return netip.Prefix{}, nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil || !samePath(f) {
			f.Close() // held, or removed by its holder after we opened it
			continue
		}
		return p, f, nil
	}
	return netip.Prefix{}, nil, errors.New("no free 10.199.<n>.0/24 for the pods")
}

// samePath says whether f is still the file at its path: a run removes
// its lock file when it ends, so a lock taken on the removed file is void.
func samePath(f *os.File) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(f.Name())
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func overlapsRoute(p netip.Prefix, routes []netlink.Route) bool {
	for _, rt := range routes {
		if rt.Dst == nil {
			continue
		}
		rp, ok := ipNetPrefix(rt.Dst)
		if ok && rp.Bits() > 0 && rp.Overlaps(p) {
			return true
		}
	}
	return false
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func (r *Runtime) writeConfig() error {
	netDir := filepath.Join(r.tmp, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		return err
	}
	// ptp: a veth per pod, the gateway's address on the host side and a
	// /32 route to the pod through it. No ipMasq: nothing in iptables.
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [{
    "type": "ptp",
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "subnet": %q,
      "dataDir": %q,
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
`, NetworkName, r.subnet.String(), filepath.Join(r.tmp, "ipam"))
	if err := os.WriteFile(filepath.Join(netDir, "10-routetrace-test.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	// Plugins that cannot work here (or that we do not want) are disabled:
	// only native snapshots, no tracing exporter, no /opt/containerd.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.internal.v1.opt", # would create /opt/containerd
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This host's root lacks CAP_SYS_RESOURCE: the pause container's -998
  # would make runc fail ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state with the rest, not in /run/containerd/runc.
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, r.root, filepath.Join(r.stateDir, "state"), r.sock, r.sock+".ttrpc", PauseImage, filepath.Join(r.stateDir, "runc"), cniBinDir, netDir)
	return os.WriteFile(r.configPath, []byte(config), 0o644)
}

func (r *Runtime) logTail() string {
	b, _ := os.ReadFile(r.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "containerd's log (" + r.logPath + "), last lines:\n" + strings.Join(lines, "\n")
}

func (r *Runtime) startContainerd() error {
	logf, err := os.Create(r.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	r.cmd = exec.Command("containerd", "--config", r.configPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// Its own process group, and killed if the test binary dies.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	r.exited = make(chan struct{})
	go func() { r.cmd.Wait(); close(r.exited) }()

	deadline := time.Now().Add(startWait)
	// The socket exists from bind(2) on but refuses connections until
	// listen(2): wait for a connection.
	for {
		if c, err := net.DialTimeout("unix", r.sock, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-r.exited:
			return fmt.Errorf("containerd exited before creating %s: %v\n%s", r.sock, r.cmd.ProcessState, r.logTail())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not listen on %s within %v\n%s", r.sock, startWait, r.logTail())
		}
	}

	ctx, cancel := context.WithTimeout(quiet(context.Background()), startWait)
	defer cancel()
	if r.rs, err = remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(r.Endpoint()).
		WithConnectionTimeout(callTimeout).Build(ctx); err != nil {
		return fmt.Errorf("connecting to containerd's CRI at %s: %w\n%s", r.sock, err, r.logTail())
	}
	if r.is, err = remote.NewRemoteImageServiceBuilder().WithEndpoint(r.Endpoint()).
		WithConnectionTimeout(callTimeout).Build(ctx); err != nil {
		return fmt.Errorf("connecting to containerd's CRI image service at %s: %w\n%s", r.sock, err, r.logTail())
	}
	// The CRI plugin answers before it has read the CNI config.
	for {
		st, err := r.rs.Status(ctx, false)
		ready := 0
		if err == nil {
			for _, c := range st.GetStatus().GetConditions() {
				if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && c.Status {
					ready++
				}
			}
		}
		if ready == 2 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd's CRI not ready within %v (status %v, %v)\n%s", startWait, st, err, r.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *Runtime) importImages() error {
	archive := filepath.Join(r.tmp, "images.tar")
	if err := writeImageArchive(archive); err != nil {
		return fmt.Errorf("building the test images: %w", err)
	}
	out, err := exec.Command("ctr", "--address", r.sock, "-n", "k8s.io", "images", "import",
		"--snapshotter", "native", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", archive, err, out)
	}
	// The CRI plugin learns of the images from containerd's events.
	ctx, cancel := context.WithTimeout(quiet(context.Background()), startWait)
	defer cancel()
	for _, img := range []string{PauseImage, BusyboxImage} {
		for {
			st, err := r.is.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: img}, false)
			if err == nil && st.GetImage() != nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRI does not see the imported image %s (%v)\n%s", img, err, r.logTail())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// cleanup removes every pod through CRI, stops containerd, and then makes
// sure, by force if needed, that no process, mount, network namespace,
// link, route or cgroup of this run is left.
func (r *Runtime) cleanup(t testing.TB) {
	t0 := time.Now()
	defer func() { t.Logf("containerd %s: cleaned up in %v", r.sock, time.Since(t0).Round(time.Millisecond)) }()
	dead := false
	if r.exited != nil {
		select {
		case <-r.exited:
			dead = true
			if !r.expectDead {
				t.Errorf("cleanup: containerd had exited (%v): removing what it left by force\n%s", r.cmd.ProcessState, r.logTail())
			}
		default:
		}
	}
	if r.rs != nil && !dead {
		ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
		sbs, err := r.rs.ListPodSandbox(ctx, nil)
		if err != nil {
			t.Errorf("cleanup: listing pods: %v", err)
		}
		for _, sb := range sbs {
			if err := r.removeSandbox(ctx, sb.Id); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		cancel()
	}
	if r.rs != nil {
		r.rs.Close(context.Background())
	}
	if r.is != nil {
		r.is.Close(context.Background())
	}
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
			t.Logf("cleanup: containerd ignored SIGTERM for 5s: SIGKILL")
			r.cmd.Process.Kill()
			<-r.exited
		}
	}
	for _, pid := range r.Shims() {
		t.Logf("cleanup: killing leftover shim %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
	r.killCgroups(t)
	r.unmountAll(t)
	r.removeLinks(t)
	r.removeShimSockets(t)
	r.removeCNICache(t)
	if err := os.RemoveAll(r.stateDir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if r.subnetLock != nil {
		os.Remove(r.subnetLock.Name())
		r.subnetLock.Close()
	}
}

func (r *Runtime) removeSandbox(ctx context.Context, id string) error {
	if err := r.rs.StopPodSandbox(ctx, id); err != nil {
		return fmt.Errorf("stopping pod sandbox %s: %w", id, err)
	}
	if err := r.rs.RemovePodSandbox(ctx, id); err != nil {
		return fmt.Errorf("removing pod sandbox %s: %w", id, err)
	}
	return nil
}

// Shims returns the pids of the containerd-shim processes serving this
// containerd (their -address is its socket).
func (r *Runtime) Shims() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == r.sock && !zombie(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

func waitGone(pid int, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if zombie(pid) {
			return
		}
	}
}

// CgroupDirs returns this run's cgroup directories that exist, one per
// hierarchy at most (runc makes the containers' cgroups under them).
func (r *Runtime) CgroupDirs() []string {
	var dirs []string
	hs, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hs {
		d := filepath.Join("/sys/fs/cgroup", h.Name(), r.cgroupParent)
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", r.cgroupParent, "cgroup.procs")); err == nil {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", r.cgroupParent)) // cgroup2 alone
	}
	return dirs
}

// killCgroups kills what is left in this run's cgroups and removes them,
// the deepest first.
func (r *Runtime) killCgroups(t testing.TB) {
	for _, top := range r.CgroupDirs() {
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					t.Logf("cleanup: killing leftover process %d in %s", pid, d)
					syscall.Kill(pid, syscall.SIGKILL)
					waitGone(pid, 5*time.Second)
				}
			}
			var err error
			for i := 0; i < 50; i++ { // a killed task leaves its cgroup a little later
				if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("cleanup: removing cgroup %s: %v", d, err)
			}
		}
	}
}

// Mounts returns the mount points of this run: under its root and state
// directories, and the pods' network namespaces.
func (r *Runtime) Mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, r.tmp+"/") || strings.HasPrefix(mp, r.stateDir+"/") || r.netnss[mp] {
			mps = append(mps, mp)
		}
	}
	return mps
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (r *Runtime) unmountAll(t testing.TB) {
	mps := r.Mounts()
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		t.Logf("cleanup: unmounting leftover %s", mp)
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("cleanup: unmounting %s: %v", mp, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.netnss {
		if err := os.Remove(p); err == nil {
			t.Logf("cleanup: removed leftover netns %s", p)
		}
	}
}

// Links returns the host's links that hold an address in the pods'
// subnet (ptp puts the gateway's address on each pod's host veth) and the
// host's routes into it.
func (r *Runtime) Links() ([]netlink.Link, []netlink.Route) {
	var links []netlink.Link
	ls, _ := netlink.LinkList()
	for _, l := range ls {
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && r.subnet.Contains(ip.Unmap()) {
				links = append(links, l)
				break
			}
		}
	}
	var routes []netlink.Route
	rs, _ := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	for _, rt := range rs {
		if rt.Dst == nil {
			continue
		}
		if p, ok := ipNetPrefix(rt.Dst); ok && p.Bits() > 0 && p.Overlaps(r.subnet) {
			routes = append(routes, rt)
		}
	}
	return links, routes
}

func (r *Runtime) removeLinks(t testing.TB) {
	if !r.subnet.IsValid() {
		return
	}
	links, _ := r.Links()
	for _, l := range links {
		t.Logf("cleanup: deleting leftover link %s", l.Attrs().Name)
		// Its namespace's teardown, asynchronous in the kernel, may delete it
		// first.
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			t.Errorf("cleanup: deleting link %s: %v", l.Attrs().Name, err)
		}
	}
	_, routes := r.Links() // the links' routes went with them
	for _, rt := range routes {
		t.Logf("cleanup: deleting leftover route %v", rt)
		if err := netlink.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			t.Errorf("cleanup: deleting route %v: %v", rt, err)
		}
	}
}

// removeShimSockets removes the sockets of shims that were killed: they
// are in /run/containerd/s (containerd 1.6 puts them there whatever its
// state directory), named in each task bundle's address file.
func (r *Runtime) removeShimSockets(t testing.TB) {
	files, _ := filepath.Glob(filepath.Join(r.stateDir, "state", "io.containerd.runtime.v2.task", "*", "*", "address"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sock, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "unix://")
		if !ok || !strings.HasPrefix(sock, "/run/containerd/s/") {
			continue
		}
		if err := os.Remove(sock); err == nil {
			t.Logf("cleanup: removed leftover shim socket %s", sock)
		}
	}
}

// cniCacheDir is where libcni keeps each attachment's result until its
// DEL; containerd 1.6 does not let us move it.
const cniCacheDir = "/var/lib/cni/results"

// SandboxIDs are the IDs of every sandbox containerd made in this run, as
// its CRI state directories name them.
func (r *Runtime) SandboxIDs() []string {
	seen := map[string]bool{}
	var ids []string
	for _, d := range []string{
		filepath.Join(r.stateDir, "state", "io.containerd.grpc.v1.cri", "sandboxes"),
		filepath.Join(r.root, "io.containerd.grpc.v1.cri", "sandboxes"),
	} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if !seen[e.Name()] {
				seen[e.Name()] = true
				ids = append(ids, e.Name())
			}
		}
	}
	r.mu.Lock()
	for id := range r.sandboxIDs {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// CNICacheFiles are libcni's cached results of this run's sandboxes: a
// sandbox removed through CRI has none left; one whose containerd died
// keeps them.
func (r *Runtime) CNICacheFiles() []string {
	var files []string
	for _, id := range r.SandboxIDs() {
		m, _ := filepath.Glob(filepath.Join(cniCacheDir, "*-"+id+"-*"))
		files = append(files, m...)
	}
	return files
}

func (r *Runtime) removeCNICache(t testing.TB) {
	for _, f := range r.CNICacheFiles() {
		t.Logf("cleanup: removing leftover CNI result %s", f)
		if err := os.Remove(f); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}
