package containerdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSpec is what RunPod makes: empty fields get a unique name, namespace
// "default" and a random UID.
type PodSpec struct {
	Name      string
	Namespace string
	UID       string
	Labels    map[string]string
	// HostNetwork pods share the host's network namespace: no veth, no
	// address of their own (IP, NetnsPath and HostVeth stay empty).
	HostNetwork bool
}

// Pod is a running pod sandbox.
type Pod struct {
	SandboxID string
	Name      string
	Namespace string
	UID       string
	IP        netip.Addr
	NetnsPath string // the bind mount of its network namespace
	HostVeth  string // the host side of its veth: the device of the /32 route to IP

	HostNetwork bool

	config *runtimeapi.PodSandboxConfig
}

// RunPod starts a pod sandbox (the pause image) with a veth in the CNI
// network. It is removed when t ends if RemovePod has not removed it.
func (r *Runtime) RunPod(t testing.TB, spec PodSpec) *Pod {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "pod-" + randHex(4)
	}
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.UID == "" {
		spec.UID = uuid()
	}
	netMode := runtimeapi.NamespaceMode_POD
	if spec.HostNetwork {
		netMode = runtimeapi.NamespaceMode_NODE
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name: spec.Name, Namespace: spec.Namespace, Uid: spec.UID,
		},
		LogDirectory: filepath.Join(r.tmp, "logs", spec.UID),
		Labels:       spec.Labels,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			// As the kubelet's cgroupfs driver names a best-effort pod's
			// cgroup, under this run's own: the containers' cgroup paths
			// are then what enrichment parses on a real node.
			CgroupParent: r.cgroupParent + "/kubepods/besteffort/pod" + spec.UID,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: netMode,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	if !spec.HostNetwork { // a host-network pod has the host's UTS namespace too
		cfg.Hostname = spec.Name
	}
	ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
	defer cancel()
	t0 := time.Now()
	id, err := r.rs.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v\n%s", spec.Namespace, spec.Name, err, r.logTail())
	}
	r.mu.Lock()
	r.sandboxIDs[id] = true
	r.mu.Unlock()
	p := &Pod{SandboxID: id, Name: spec.Name, Namespace: spec.Namespace, UID: spec.UID, HostNetwork: spec.HostNetwork, config: cfg}
	t.Cleanup(func() { r.removePodIfPresent(t, p) })
	if spec.HostNetwork {
		t.Logf("pod %s/%s: sandbox %.12s, host network, started in %v", p.Namespace, p.Name, id, time.Since(t0).Round(time.Millisecond))
		return p
	}

	st, err := r.rs.PodSandboxStatus(ctx, id, true)
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	if p.IP, err = netip.ParseAddr(st.GetStatus().GetNetwork().GetIp()); err != nil {
		t.Fatalf("pod %s has no IP: %v (status %v)", spec.Name, err, st.GetStatus())
	}
	if p.NetnsPath, err = netnsPath(st.GetInfo()); err != nil {
		t.Fatalf("pod %s: %v", spec.Name, err)
	}
	r.mu.Lock()
	r.netnss[resolvedPath(p.NetnsPath)] = true // as mountinfo shows it
	r.mu.Unlock()
	if p.HostVeth, err = hostDevice(p.IP); err != nil {
		t.Fatalf("pod %s: %v", spec.Name, err)
	}
	t.Logf("pod %s/%s: sandbox %.12s, %v on %s, netns %s, started in %v", p.Namespace, p.Name, id, p.IP, p.HostVeth, p.NetnsPath, time.Since(t0).Round(time.Millisecond))
	return p
}

// netnsPath reads the network namespace's path from containerd's verbose
// sandbox info: its runtime spec.
func netnsPath(info map[string]string) (string, error) {
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string }
			}
		}
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		return "", fmt.Errorf("decoding the sandbox's verbose info: %w", err)
	}
	for _, ns := range v.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" {
			return ns.Path, nil
		}
	}
	return "", fmt.Errorf("no network namespace path in the sandbox's runtime spec")
}

// resolvedPath is p with its directory's symlinks resolved
// (/var/run/netns/x is /run/netns/x).
func resolvedPath(p string) string {
	if d, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		return filepath.Join(d, filepath.Base(p))
	}
	return p
}

// hostDevice is the device of the host's /32 route to ip.
func hostDevice(ip netip.Addr) (string, error) {
	dst := &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil {
		return "", fmt.Errorf("listing routes to %v: %w", ip, err)
	}
	for _, rt := range routes {
		l, err := netlink.LinkByIndex(rt.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("link %d of the route to %v: %w", rt.LinkIndex, ip, err)
		}
		return l.Attrs().Name, nil
	}
	return "", fmt.Errorf("no /32 route to %v on the host", ip)
}

func uuid() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

// RunContainer starts a container of BusyboxImage in pod, with NET_ADMIN
// so that it can change its pod's routes (in a HostNetwork pod those are
// the host's: do not). Without cmd it sleeps forever.
func (r *Runtime) RunContainer(t testing.TB, pod *Pod, name string, cmd ...string) string {
	t.Helper()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: BusyboxImage},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}},
				// The pod's: its network (or the host's), its own pid namespace.
				NamespaceOptions: pod.config.Linux.SecurityContext.NamespaceOptions,
			},
		},
	}
	ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
	defer cancel()
	t0 := time.Now()
	id, err := r.rs.CreateContainer(ctx, pod.SandboxID, cfg, pod.config)
	if err != nil {
		t.Fatalf("CreateContainer %s in pod %s: %v\n%s", name, pod.Name, err, r.logTail())
	}
	if err := r.rs.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer %s in pod %s: %v\n%s", name, pod.Name, err, r.logTail())
	}
	t.Logf("container %s in pod %s: %.12s, started in %v", name, pod.Name, id, time.Since(t0).Round(time.Millisecond))
	return id
}

// Exec runs cmd in the container (CRI ExecSync) and returns its stdout;
// err says its exit status and stderr when it fails.
func (r *Runtime) Exec(t testing.TB, containerID string, cmd ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
	defer cancel()
	stdout, _, err := r.rs.ExecSync(ctx, containerID, cmd, callTimeout/2)
	if err != nil {
		return string(stdout), fmt.Errorf("exec %q in %.12s: %w", strings.Join(cmd, " "), containerID, err)
	}
	return string(stdout), nil
}

// RemovePod stops and removes the pod: CNI DEL removes its veth and its
// host route.
func (r *Runtime) RemovePod(t testing.TB, pod *Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
	defer cancel()
	if err := r.removeSandbox(ctx, pod.SandboxID); err != nil {
		t.Fatalf("%v\n%s", err, r.logTail())
	}
}

func (r *Runtime) removePodIfPresent(t testing.TB, pod *Pod) {
	ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
	defer cancel()
	sbs, err := r.rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{Id: pod.SandboxID})
	if err != nil || len(sbs) == 0 {
		return // gone, or the runtime's own cleanup will say
	}
	if err := r.removeSandbox(ctx, pod.SandboxID); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// ContainerPID is the host pid of the container's first process, from
// containerd's verbose container status.
func (r *Runtime) ContainerPID(t testing.TB, containerID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(quiet(context.Background()), callTimeout)
	defer cancel()
	st, err := r.rs.ContainerStatus(ctx, containerID, true)
	if err != nil {
		t.Fatalf("ContainerStatus %.12s: %v", containerID, err)
	}
	var v struct{ Pid int }
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &v); err != nil || v.Pid <= 0 {
		t.Fatalf("container %.12s: no pid in its verbose status (%v): %q", containerID, err, st.GetInfo()["info"])
	}
	return v.Pid
}
