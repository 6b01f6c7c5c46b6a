package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/routetrace/routetrace/event"
)

// KubeOptions configure NewKubeSource.
type KubeOptions struct {
	// Kubeconfig is the path of a kubeconfig file; "" uses the in-cluster
	// config (service account token and KUBERNETES_SERVICE_HOST).
	Kubeconfig string
	// NodeName is the Kubernetes name of this node; "" uses $NODE_NAME,
	// else the hostname.
	NodeName string
	// Logger receives the informer's logs; nil uses slog.Default().
	Logger *slog.Logger
}

// KubeSource lists this node's pods from the Kubernetes API. A pod
// informer restricted to spec.nodeName=<node> keeps, for each pod, the
// event values List returns (see slimPod), so List makes no API call.
type KubeSource struct {
	client kubernetes.Interface
	host   string // API server URL, for Describe
	node   string
	log    *slog.Logger

	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	running  sync.WaitGroup
	closed   sync.Once

	errMu   sync.Mutex
	lastErr error // last list/watch failure, for Describe and WaitForSync

	mu   sync.Mutex
	last map[types.UID]*kubePod // what the last List returned, by pod UID
}

var _ Source = (*KubeSource)(nil)

// NewKubeSource connects to the API server named by opts.Kubeconfig (or the
// in-cluster config) and starts watching this node's pods in the
// background. It does not wait for the first list: see WaitForSync.
func NewKubeSource(opts KubeOptions) (*KubeSource, error) {
	cfg, err := kubeConfig(opts.Kubeconfig)
	if err != nil {
		return nil, err
	}
	// Protobuf is smaller to receive and cheaper to decode than JSON for
	// the built-in types; JSON stays acceptable for servers that insist.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.UserAgent = "routetrace"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client for %s: %w", cfg.Host, err)
	}
	node, err := nodeName(opts.NodeName)
	if err != nil {
		return nil, err
	}
	return newKubeSource(client, cfg.Host, node, opts.Logger), nil
}

// kubeConfig loads the kubeconfig file at path, or the in-cluster config
// when path is "".
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, errors.New("not in a cluster (KUBERNETES_SERVICE_HOST unset): pass --kubeconfig PATH")
		}
		if err != nil {
			return nil, fmt.Errorf("loading in-cluster config: %w (or pass --kubeconfig PATH)", err)
		}
		return cfg, nil
	}
	// clientcmd's own message for a missing file does not always name it.
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("reading kubeconfig: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// nodeName is name, else $NODE_NAME (the downward API's spec.nodeName in
// a DaemonSet), else the hostname.
func nodeName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	if name := os.Getenv("NODE_NAME"); name != "" {
		return name, nil
	}
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("finding the node name: %w (set NODE_NAME)", err)
	}
	return name, nil
}

// newKubeSource starts a pod informer for node on client. Tests pass a
// fake clientset.
func newKubeSource(client kubernetes.Interface, host, node string, log *slog.Logger) *KubeSource {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("source", "kubernetes", "node", node)
	s := &KubeSource{client: client, host: host, node: node, log: log, last: map[types.UID]*kubePod{}}

	selector := fields.OneTermEqualSelector("spec.nodeName", node).String()
	tweak := func(o *metav1.ListOptions) { o.FieldSelector = selector }
	pods := client.CoreV1().Pods(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			if rc, ok := client.CoreV1().RESTClient().(*rest.RESTClient); ok && rc != nil {
				return streamPodList(ctx, rc, o)
			}
			return pods.List(ctx, o) // a fake clientset
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return pods.Watch(ctx, o)
		},
	}
	// No indexers: List reads every pod, and the namespace index the
	// shared factory adds would cost a set entry a pod.
	s.informer = cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, client), &corev1.Pod{},
		cache.SharedIndexInformerOptions{ // no resync: nothing handles events
			Indexers:          cache.Indexers{},
			ObjectDescription: "pods on node " + node, // for client-go's logs
		})
	// Neither can fail: the informer has not started.
	_ = s.informer.SetTransform(slimPod)
	_ = s.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		s.errMu.Lock()
		s.lastErr = err
		s.errMu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})

	// The informer logs through klog's contextual logger: hand it ours.
	ctx, cancel := context.WithCancel(context.Background())
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(log.Handler()))
	s.stop = cancel
	s.running.Go(func() { s.informer.RunWithContext(ctx) })
	return s
}

// streamPodList lists pods as JSON and decodes the response one pod at a
// time into kubePods. client-go asks for a watch-list first, which streams
// pods singly anyway; this is for servers that refuse it, whose full list
// client-go would otherwise decode whole before any transform runs: 10,000
// pods of 8 KB of JSON peaked at 314 MiB of heap.
func streamPodList(ctx context.Context, rc *rest.RESTClient, opts metav1.ListOptions) (*kubePodList, error) {
	body, err := rc.Get().Resource("pods").VersionedParams(&opts, scheme.ParameterCodec).
		SetHeader("Accept", "application/json").Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	list := &kubePodList{}
	dec := json.NewDecoder(body)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("decoding the pod list: %w", err)
		}
		switch tok {
		case "kind", "apiVersion":
			var v string
			err = dec.Decode(&v)
			if tok == "kind" && err == nil && v != "PodList" {
				err = fmt.Errorf("got a %s, not a PodList", v)
			}
		case "metadata":
			err = dec.Decode(&list.ListMeta)
		case "items":
			if err = expectDelim(dec, '['); err != nil {
				break
			}
			for dec.More() {
				var p corev1.Pod
				if err = dec.Decode(&p); err != nil {
					break
				}
				list.Items = append(list.Items, newKubePod(&p))
			}
			if err == nil {
				err = expectDelim(dec, ']')
			}
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, fmt.Errorf("decoding the pod list: %w", err)
		}
	}
	return list, nil
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("decoding the pod list: %w", err)
	}
	if tok != d {
		return fmt.Errorf("decoding the pod list: got %v, want %v", tok, d)
	}
	return nil
}

// kubePodList is a pod list whose items are already kubePods, so that
// the list costs no more than the cache it fills.
type kubePodList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []runtime.Object
}

func (l *kubePodList) DeepCopyObject() runtime.Object {
	c := *l
	c.Items = slices.Clone(l.Items)
	return &c
}

// kubePod is the informer's copy of a pod: what List returns for it,
// built once when the pod arrives, instead of the pod. The embedded
// ObjectMeta holds only the name, namespace, UID and resourceVersion the
// informer keys and tracks it by.
type kubePod struct {
	metav1.ObjectMeta
	pod        *event.Pod
	containers []*event.Container
}

// A kubePod is a runtime.Object so that a kubePodList can hold it.
func (k *kubePod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject returns k: a kubePod is never changed once built.
func (k *kubePod) DeepCopyObject() runtime.Object { return k }

// slimPod is the informer's transform: it turns a *corev1.Pod into a
// *kubePod, so that the cache holds a few hundred bytes a pod rather than
// a corev1.Pod (1.2 KB empty) with the kilobytes of spec, managedFields and
// annotations the API sends. Nothing of the decoded pod stays reachable but
// the strings and the labels map it shares. It is idempotent, as client-go
// asks: a *kubePod is returned as it is.
func slimPod(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return newKubePod(o), nil
	case cache.DeletedFinalStateUnknown:
		if p, ok := o.Obj.(*corev1.Pod); ok {
			o.Obj = newKubePod(p)
		}
		return o, nil
	}
	return obj, nil
}

// Name is "kubernetes".
func (s *KubeSource) Name() string { return "kubernetes" }

// Describe names the API server's version and URL, the node, and how many
// pods the cache holds, e.g.
// "Kubernetes v1.31.0 at https://10.96.0.1:443; node n1; 57 pods".
// A source just made has not listed yet: Describe waits for that while ctx
// allows, at most describeWait, and fails if listing failed (RBAC).
func (s *KubeSource) Describe(ctx context.Context) (string, error) {
	v, err := discovery.ToServerVersionInterfaceWithContext(s.client.Discovery()).ServerVersionWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("asking %s for its version: %w", s.host, err)
	}
	d := fmt.Sprintf("Kubernetes %s", v.GitVersion)
	if s.host != "" {
		d += " at " + s.host
	}
	d += "; node " + s.node
	wait, cancel := context.WithTimeout(ctx, describeWait)
	defer cancel()
	if !cache.WaitForCacheSync(wait.Done(), s.informer.HasSynced) {
		if err := s.watchErr(); err != nil {
			return "", fmt.Errorf("%s; listing its pods: %w", d, err)
		}
		return d + "; pods not listed yet", nil
	}
	n := len(s.informer.GetStore().ListKeys())
	if n == 1 {
		d += "; 1 pod"
	} else {
		d += fmt.Sprintf("; %d pods", n)
	}
	if n == 0 {
		d += " (is the node name right? set NODE_NAME)"
	}
	return d, nil
}

// describeWait bounds how long Describe waits for the first list.
const describeWait = 5 * time.Second

func (s *KubeSource) watchErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastErr
}

// WaitForSync returns once the informer holds the node's pods, or ctx's
// error together with the last list/watch failure (e.g. RBAC refusing to
// list pods).
func (s *KubeSource) WaitForSync(ctx context.Context) error {
	if cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return nil
	}
	err := fmt.Errorf("waiting for the pods of node %s from %s: %w", s.node, s.host, context.Cause(ctx))
	if werr := s.watchErr(); werr != nil {
		err = fmt.Errorf("%w (last error: %v)", err, werr)
	}
	return err
}

// List returns the node's pods and their containers from the informer's
// cache, in no particular order. A pod whose resourceVersion is the same as
// at the last List is the same *event.Pod, with the same *event.Container
// values, as that List returned; so is one whose new version changed
// nothing List shows (a probe, a condition). Before the first sync it
// fails rather than return a partial list that would make present pods
// look absent.
func (s *KubeSource) List(ctx context.Context) (Snapshot, error) {
	if !s.informer.HasSynced() {
		err := fmt.Errorf("pods of node %s not listed yet", s.node)
		if werr := s.watchErr(); werr != nil {
			err = fmt.Errorf("%w (last error: %v)", err, werr)
		}
		return Snapshot{}, err
	}
	objs := s.informer.GetStore().List()

	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[types.UID]*kubePod, len(objs))
	snap := Snapshot{Pods: make([]*event.Pod, 0, len(objs)), Containers: make([]*event.Container, 0, 3*len(objs))}
	for _, obj := range objs {
		kp, ok := obj.(*kubePod)
		if !ok {
			continue
		}
		// The informer replaced its copy when the pod changed; keep what the
		// last List returned if nothing List shows has changed.
		if last := s.last[kp.UID]; last != nil && last != kp && last.equal(kp) {
			kp = last
		}
		next[kp.UID] = kp
		snap.Pods = append(snap.Pods, kp.pod)
		snap.Containers = append(snap.Containers, kp.containers...)
	}
	s.last = next
	return snap, nil
}

// newKubePod converts a pod to the event types.
func newKubePod(p *corev1.Pod) *kubePod {
	pod := &event.Pod{
		Name:        p.Name,
		Namespace:   intern(p.Namespace),
		UID:         string(p.UID),
		Labels:      internLabels(p.Labels),
		HostNetwork: p.Spec.HostNetwork,
	}
	// A pod that has finished has had its sandbox torn down and its
	// addresses returned to the IPAM, which may already have handed them to
	// a new pod: the API still shows them, but they no longer name it.
	if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		pod.IPs = podIPs(p.Status)
	}
	kp := &kubePod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: pod.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
		pod:        pod,
	}
	// Init containers include native sidecars; they and ephemeral (debug)
	// containers can change routes as well as the main ones.
	n := len(p.Status.InitContainerStatuses) + len(p.Status.ContainerStatuses) + len(p.Status.EphemeralContainerStatuses)
	if n == 0 {
		return kp
	}
	all := make([]event.Container, 0, n) // one allocation for the pod's containers
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, c := range list {
			if c.ContainerID == "" { // not created yet
				continue
			}
			all = append(all, event.Container{ID: stripRuntimeScheme(c.ContainerID), Name: intern(c.Name), Image: intern(c.Image), Pod: pod})
		}
	}
	kp.containers = make([]*event.Container, len(all))
	for i := range all {
		kp.containers[i] = &all[i]
	}
	return kp
}

// podIPs parses status.podIPs, or status.podIP from servers too old to set
// podIPs. Unparsable addresses are skipped.
func podIPs(st corev1.PodStatus) []netip.Addr {
	ips := make([]netip.Addr, 0, max(len(st.PodIPs), 1))
	for _, ip := range st.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			ips = append(ips, a)
		}
	}
	if len(ips) == 0 && st.PodIP != "" {
		if a, err := netip.ParseAddr(st.PodIP); err == nil {
			ips = append(ips, a)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	return ips
}

// intern returns the one copy of s that all pods share: namespaces,
// label keys and values, container names and images repeat across the
// replicas of a workload, and each decoded pod brings its own copy.
func intern(s string) string { return unique.Make(s).Value() }

func internLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = intern(v)
	}
	return out
}

// stripRuntimeScheme turns a containerStatuses[].containerID
// ("containerd://<id>", "cri-o://<id>", "docker://<id>") into the
// runtime's own ID.
func stripRuntimeScheme(id string) string {
	if _, rest, ok := strings.Cut(id, "://"); ok {
		return rest
	}
	return id
}

// equal reports whether k and o would list the same pod and containers, so
// that a pod whose status changed in a way List does not show (a probe, a
// condition) keeps its values.
func (k *kubePod) equal(o *kubePod) bool {
	a, b := k.pod, o.pod
	if a.Name != b.Name || a.Namespace != b.Namespace || a.UID != b.UID || a.HostNetwork != b.HostNetwork ||
		len(a.Labels) != len(b.Labels) || len(a.IPs) != len(b.IPs) || len(k.containers) != len(o.containers) {
		return false
	}
	for key, v := range a.Labels {
		if w, ok := b.Labels[key]; !ok || w != v {
			return false
		}
	}
	for i := range a.IPs {
		if a.IPs[i] != b.IPs[i] {
			return false
		}
	}
	for i, c := range k.containers {
		d := o.containers[i]
		if c.ID != d.ID || c.Name != d.Name || c.Image != d.Image {
			return false
		}
	}
	return true
}

// Close stops the informer and waits for its goroutines.
func (s *KubeSource) Close() error {
	s.closed.Do(func() {
		s.stop()
		s.running.Wait()
	})
	return nil
}
