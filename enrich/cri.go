package enrich

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"

	"github.com/routetrace/routetrace/event"
)

// criSockets are the CRI sockets DetectCRISocket tries, in order:
// containerd, CRI-O, k3s's containerd, cri-dockerd.
var criSockets = []string{
	"/run/containerd/containerd.sock",
	"/run/crio/crio.sock",
	"/var/run/crio/crio.sock",
	"/run/k3s/containerd/containerd.sock",
	"/run/cri-dockerd.sock",
}

// criTimeout bounds connecting, and each call whose ctx has no earlier
// deadline.
const criTimeout = 10 * time.Second

// DetectCRISocket returns the endpoint (unix://path) of the first of the
// well-known CRI sockets that exists and is a socket.
func DetectCRISocket() (endpoint string, ok bool) {
	return detectCRISocket(criSockets)
}

func detectCRISocket(paths []string) (string, bool) {
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return "unix://" + p, true
		}
	}
	return "", false
}

// CRISource lists the pods and containers of the container runtime behind
// a CRI socket (containerd, CRI-O, cri-dockerd).
//
// List may be called from several goroutines at once: the CRI client is
// safe for concurrent use and the sandbox cache has its own lock.
type CRISource struct {
	socket string // the socket's path, for messages
	rs     internalapi.RuntimeService

	mu sync.Mutex
	// sandboxes caches what PodSandboxStatus said of each sandbox: its
	// addresses and host-network flag do not change while it lives.
	sandboxes map[string]sandboxNet
}

type sandboxNet struct {
	ips         []netip.Addr
	hostNetwork bool
	ready       bool // the sandbox was ready when asked: ips are final
}

var _ Source = (*CRISource)(nil)

// quiet gives the CRI client a logger that discards: it logs every failed
// call through klog, and the caller gets the error anyway.
func quiet(ctx context.Context) context.Context {
	return klog.NewContext(ctx, logr.Discard())
}

// NewCRISource connects to a CRI socket: "unix:///run/containerd/containerd.sock"
// or a plain path. It fails when nothing answers there.
func NewCRISource(endpoint string) (*CRISource, error) {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok && !strings.HasPrefix(endpoint, "/") {
		return nil, fmt.Errorf("cri: endpoint %q is neither unix:///path nor an absolute path", endpoint)
	}
	s := &CRISource{socket: path, sandboxes: map[string]sandboxNet{}}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, s.wrap("opening the socket", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, s.wrap("opening the socket", errors.New("not a socket"))
	}
	ctx, cancel := context.WithTimeout(quiet(context.Background()), criTimeout)
	defer cancel()
	s.rs, err = remote.NewRemoteRuntimeServiceBuilder().
		WithEndpoint("unix://" + path).
		WithConnectionTimeout(criTimeout).
		WithTracerProvider(nil). // no otelgrpc handler: nothing to trace
		Build(ctx)
	if err != nil {
		return nil, s.wrap("connecting", err)
	}
	return s, nil
}

// wrap says what failed, at which socket, and what to check.
func (s *CRISource) wrap(what string, err error) error {
	return fmt.Errorf("cri: %s at %s: %w (is the container runtime running? --cri-socket overrides the socket)", what, s.socket, err)
}

// Name is "cri".
func (s *CRISource) Name() string { return "cri" }

// Describe says which runtime answers, e.g.
// "containerd 1.6.20~ds1 (CRI v1) at /run/containerd/containerd.sock".
func (s *CRISource) Describe(ctx context.Context) (string, error) {
	v, err := s.rs.Version(quiet(ctx), "v1")
	if err != nil {
		return "", s.wrap("asking the runtime's version", err)
	}
	return fmt.Sprintf("%s %s (CRI %s) at %s", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion, s.socket), nil
}

// RuntimeName is the runtime's own name ("containerd", "cri-o"): the
// runtime of containers whose cgroup path does not say (the kubelet's
// cgroupfs driver names a container by its id alone).
func (s *CRISource) RuntimeName(ctx context.Context) (string, error) {
	v, err := s.rs.Version(quiet(ctx), "v1")
	if err != nil {
		return "", s.wrap("asking the runtime's version", err)
	}
	if v.RuntimeName == "cri-o" {
		return "crio", nil // as the cgroup paths name it
	}
	return v.RuntimeName, nil
}

// List returns every pod sandbox, ready or not, and every container. A
// sandbox that is not ready has had its network torn down (its addresses
// may already be another pod's): its pod is listed without IPs. A
// container whose sandbox appeared after the sandboxes were listed is left
// for the next List.
func (s *CRISource) List(ctx context.Context) (Snapshot, error) {
	ctx = quiet(ctx)
	sbs, err := s.rs.ListPodSandbox(ctx, nil)
	if err != nil {
		return Snapshot{}, s.wrap("listing pod sandboxes", err)
	}
	ctrs, err := s.rs.ListContainers(ctx, nil)
	if err != nil {
		return Snapshot{}, s.wrap("listing containers", err)
	}

	snap := Snapshot{Pods: make([]*event.Pod, 0, len(sbs)), Containers: make([]*event.Container, 0, len(ctrs))}
	pods := make(map[string]*event.Pod, len(sbs))
	listed := make(map[string]bool, len(sbs))
	for _, sb := range sbs {
		listed[sb.Id] = true
		ready := sb.State == runtimeapi.PodSandboxState_SANDBOX_READY
		net, err := s.sandboxNet(ctx, sb.Id, ready)
		if err != nil {
			if isNotFound(err) {
				continue // removed since it was listed
			}
			return Snapshot{}, err
		}
		md := sb.GetMetadata()
		p := &event.Pod{
			Name:        md.GetName(),
			Namespace:   md.GetNamespace(),
			UID:         md.GetUid(),
			Labels:      podLabels(sb.Labels),
			HostNetwork: net.hostNetwork,
		}
		if ready {
			p.IPs = net.ips
		}
		pods[sb.Id] = p
		snap.Pods = append(snap.Pods, p)
	}
	s.forget(listed)

	for _, c := range ctrs {
		p := pods[c.PodSandboxId]
		if p == nil {
			continue
		}
		snap.Containers = append(snap.Containers, &event.Container{
			ID:    c.Id,
			Name:  c.GetMetadata().GetName(),
			Image: imageName(c),
			Pod:   p,
		})
	}
	return snap, nil
}

// sandboxNet returns the sandbox's addresses and network mode, asking the
// runtime the first time, and again if the sandbox was not ready then but
// is now (its addresses may not have been set yet). A stopped sandbox is
// asked once: it never becomes ready again, and its addresses are not
// reported.
func (s *CRISource) sandboxNet(ctx context.Context, id string, ready bool) (sandboxNet, error) {
	s.mu.Lock()
	n, ok := s.sandboxes[id]
	s.mu.Unlock()
	if ok && (n.ready || !ready) {
		return n, nil
	}
	resp, err := s.rs.PodSandboxStatus(ctx, id, false)
	if err != nil {
		return sandboxNet{}, s.wrap(fmt.Sprintf("reading pod sandbox %.12s's status", id), err)
	}
	st := resp.GetStatus()
	n = sandboxNet{
		hostNetwork: st.GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE,
		ready:       st.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY,
	}
	if !n.hostNetwork {
		if ip, err := netip.ParseAddr(st.GetNetwork().GetIp()); err == nil {
			n.ips = append(n.ips, ip)
		}
		for _, a := range st.GetNetwork().GetAdditionalIps() {
			if ip, err := netip.ParseAddr(a.GetIp()); err == nil {
				n.ips = append(n.ips, ip)
			}
		}
	}
	s.mu.Lock()
	s.sandboxes[id] = n
	s.mu.Unlock()
	return n, nil
}

// forget drops the cache entries of sandboxes no longer listed.
func (s *CRISource) forget(listed map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.sandboxes {
		if !listed[id] {
			delete(s.sandboxes, id)
		}
	}
}

// cachedSandboxes is the number of sandboxes whose status is cached.
func (s *CRISource) cachedSandboxes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sandboxes)
}

func isNotFound(err error) bool {
	return status.Code(err) == codes.NotFound
}

// podLabels are the sandbox's labels without the io.kubernetes.* keys the
// kubelet adds (pod name, namespace, uid, container name); nil when none
// is left.
func podLabels(l map[string]string) map[string]string {
	var out map[string]string
	for k, v := range l {
		if !strings.HasPrefix(k, "io.kubernetes.") {
			if out == nil {
				out = make(map[string]string, len(l))
			}
			out[k] = v
		}
	}
	return out
}

// imageName is the container's image by name when the runtime gives one
// (containerd gives the name the container was created with; some
// runtimes give only the image ID or a digest).
func imageName(c *runtimeapi.Container) string {
	img := c.GetImage()
	for _, n := range []string{img.GetImage(), img.GetUserSpecifiedImage(), c.GetImageRef()} {
		if isImageName(n) {
			return n
		}
	}
	if img.GetImage() != "" {
		return img.GetImage()
	}
	return c.GetImageRef()
}

// isImageName says whether s names an image rather than being an image ID
// ("sha256:..." or bare hex).
func isImageName(s string) bool {
	if s == "" || strings.HasPrefix(s, "sha256:") {
		return false
	}
	if len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" {
		return false
	}
	return true
}

// Close closes the connection.
func (s *CRISource) Close() error {
	return s.rs.Close(context.Background())
}
