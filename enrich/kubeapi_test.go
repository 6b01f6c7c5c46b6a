package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/routetrace/routetrace/event"
)

const testNode = "n1"

// webPod has every field List reads, and some it must drop.
func webPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "default", UID: "uid-web-1", ResourceVersion: "10",
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 512)},
			ManagedFields: []metav1.ManagedFieldsEntry{{
				Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
				FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{}}`)},
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:   testNode,
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      "10.244.1.5",
			PodIPs:     []corev1.PodIP{{IP: "10.244.1.5"}, {IP: "fd00:10:244:1::5"}},
			HostIP:     "192.0.2.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "init", ContainerID: "docker://cccc", Image: "docker.io/library/busybox:1.36",
				ImageID: "docker.io/library/busybox@sha256:1111",
			}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://aaaa", Image: "docker.io/library/nginx:1.27", ImageID: "sha256:2222", Ready: true, RestartCount: 3},
				{Name: "proxy", ContainerID: "cri-o://bbbb", Image: "docker.io/envoyproxy/envoy:v1.31"},
			},
		},
	}
}

// agentPod uses the node's network and has a container not created yet.
func agentPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-x", Namespace: "kube-system", UID: "uid-agent", ResourceVersion: "11"},
		Spec:       corev1.PodSpec{NodeName: testNode, HostNetwork: true},
		Status: corev1.PodStatus{
			Phase:  corev1.PodPending,
			PodIPs: []corev1.PodIP{{IP: "192.0.2.1"}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "agent", ContainerID: "containerd://dddd", Image: "example.com/agent:2"},
				{Name: "late", Image: "example.com/late:1"},
			},
		},
	}
}

func otherNodePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default", UID: "uid-elsewhere", ResourceVersion: "12"},
		Spec:       corev1.PodSpec{NodeName: "n2"},
		Status: corev1.PodStatus{
			PodIPs:            []corev1.PodIP{{IP: "10.244.2.9"}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c", ContainerID: "containerd://eeee", Image: "x"}},
		},
	}
}

// wantWeb and wantAgent are what List must say about webPod and agentPod.
func wantWeb() (event.Pod, []event.Container) {
	p := event.Pod{
		Name: "web-1", Namespace: "default", UID: "uid-web-1",
		Labels: map[string]string{"app": "web", "tier": "front"},
		IPs:    []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00:10:244:1::5")},
	}
	return p, []event.Container{
		{ID: "cccc", Name: "init", Image: "docker.io/library/busybox:1.36"},
		{ID: "aaaa", Name: "app", Image: "docker.io/library/nginx:1.27"},
		{ID: "bbbb", Name: "proxy", Image: "docker.io/envoyproxy/envoy:v1.31"},
	}
}

func wantAgent() (event.Pod, []event.Container) {
	p := event.Pod{
		Name: "agent-x", Namespace: "kube-system", UID: "uid-agent",
		IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, HostNetwork: true,
	}
	return p, []event.Container{{ID: "dddd", Name: "agent", Image: "example.com/agent:2"}}
}

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

// fakeKube is a fake clientset that, like the API server and unlike the
// fake alone, applies list and watch field selectors, and records them.
type fakeKube struct {
	*fake.Clientset
	mu        sync.Mutex
	selectors []string // "list <selector>" or "watch <selector>"
}

func newFakeKube(t *testing.T, objs ...runtime.Object) *fakeKube {
	t.Helper()
	f := &fakeKube{Clientset: fake.NewClientset(objs...)}
	f.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.31.0", Major: "1", Minor: "31"}
	f.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		la := a.(k8stesting.ListActionImpl)
		sel, err := f.record("list", la.ListOptions.FieldSelector)
		if err != nil {
			return true, nil, err
		}
		obj, err := f.Tracker().List(podsGVR, corev1.SchemeGroupVersion.WithKind("Pod"), la.Namespace, la.ListOptions)
		if err != nil {
			return true, nil, err
		}
		list := obj.(*corev1.PodList)
		list.Items = slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return !podMatches(sel, &p) })
		return true, list, nil
	})
	f.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		wa := a.(k8stesting.WatchActionImpl)
		sel, err := f.record("watch", wa.ListOptions.FieldSelector)
		if err != nil {
			return true, nil, err
		}
		w, err := f.Tracker().Watch(podsGVR, wa.Namespace, wa.ListOptions)
		if err != nil {
			return true, nil, err
		}
		return true, watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
			p, ok := e.Object.(*corev1.Pod)
			return e, !ok || podMatches(sel, p)
		}), nil
	})
	return f
}

func (f *fakeKube) record(verb, selector string) (fields.Selector, error) {
	f.mu.Lock()
	f.selectors = append(f.selectors, verb+" "+selector)
	f.mu.Unlock()
	return fields.ParseSelector(selector)
}

func (f *fakeKube) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.selectors)
}

func podMatches(sel fields.Selector, p *corev1.Pod) bool {
	return sel.Matches(fields.Set{"spec.nodeName": p.Spec.NodeName, "metadata.name": p.Name, "metadata.namespace": p.Namespace})
}

func startFake(t *testing.T, f *fakeKube) *KubeSource {
	t.Helper()
	s := newKubeSource(f, "https://fake.example:6443", testNode, nil)
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func list(t *testing.T, s *KubeSource) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	snap, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return snap
}

// checkSnapshot compares a snapshot with the wanted pods and their
// containers, field by field, and checks each container points at its pod
// in snap.Pods.
func checkSnapshot(t *testing.T, snap Snapshot, want map[string][]event.Container, wantPods ...event.Pod) {
	t.Helper()
	pods := map[string]*event.Pod{}
	for _, p := range snap.Pods {
		if pods[p.UID] != nil {
			t.Errorf("pod %s listed twice", p.UID)
		}
		pods[p.UID] = p
	}
	if len(pods) != len(wantPods) {
		var got []string
		for uid := range pods {
			got = append(got, uid)
		}
		t.Errorf("listed pods %v, want %d", got, len(wantPods))
	}
	for _, w := range wantPods {
		got := pods[w.UID]
		if got == nil {
			t.Errorf("pod %s/%s not listed", w.Namespace, w.Name)
			continue
		}
		if !reflect.DeepEqual(*got, w) {
			t.Errorf("pod %s:\n got %+v\nwant %+v", w.UID, *got, w)
		}
	}
	got := map[string][]event.Container{}
	for _, c := range snap.Containers {
		if c.Pod == nil || pods[c.Pod.UID] != c.Pod {
			t.Errorf("container %s points at %p, not at a listed pod", c.ID, c.Pod)
			continue
		}
		v := *c
		v.Pod = nil
		got[c.Pod.UID] = append(got[c.Pod.UID], v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("containers by pod UID:\n got %+v\nwant %+v", got, want)
	}
}

func TestKubeListsOnlyThisNode(t *testing.T) {
	f := newFakeKube(t, webPod(), agentPod(), otherNodePod())
	s := startFake(t, f)

	wp, wc := wantWeb()
	ap, ac := wantAgent()
	checkSnapshot(t, list(t, s), map[string][]event.Container{wp.UID: wc, ap.UID: ac}, wp, ap)

	seen := f.seen()
	if len(seen) < 2 || seen[0] != "list spec.nodeName=n1" {
		t.Errorf("requests %q, want a list then a watch with spec.nodeName=n1", seen)
	}
	for _, s := range seen {
		if !strings.HasSuffix(s, " spec.nodeName=n1") {
			t.Errorf("request %q without the node's field selector", s)
		}
	}
}

func TestKubeDescribe(t *testing.T) {
	s := startFake(t, newFakeKube(t, webPod(), agentPod(), otherNodePod()))
	got, err := s.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := "Kubernetes v1.31.0 at https://fake.example:6443; node n1; 2 pods"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	// Just made, as `routetrace probe` does: Describe waits for the list.
	fresh := newKubeSource(newFakeKube(t, webPod(), otherNodePod()), "https://fake.example:6443", testNode, nil)
	defer fresh.Close()
	got, err = fresh.Describe(t.Context())
	if want := "Kubernetes v1.31.0 at https://fake.example:6443; node n1; 1 pod"; got != want || err != nil {
		t.Errorf("Describe of a new source = %q, %v; want %q", got, err, want)
	}
	if s.Name() != "kubernetes" {
		t.Errorf("Name = %q", s.Name())
	}
}

// poll calls f until it returns "" or the deadline passes.
func poll(t *testing.T, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findPodUID(snap Snapshot, uid string) *event.Pod {
	for _, p := range snap.Pods {
		if p.UID == uid {
			return p
		}
	}
	return nil
}

func TestKubeWatch(t *testing.T) {
	f := newFakeKube(t, agentPod())
	s := startFake(t, f)
	pods := f.CoreV1().Pods("default")
	ctx := t.Context()

	// Added.
	if _, err := pods.Create(ctx, webPod(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, otherNodePod(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "created pod not listed", func() string {
		if findPodUID(list(t, s), "uid-web-1") == nil {
			return "web-1 missing"
		}
		return ""
	})
	wp, wc := wantWeb()
	ap, ac := wantAgent()
	first := list(t, s)
	checkSnapshot(t, first, map[string][]event.Container{wp.UID: wc, ap.UID: ac}, wp, ap)

	// Unchanged: the same values.
	again := list(t, s)
	if findPodUID(again, "uid-web-1") != findPodUID(first, "uid-web-1") || findPodUID(again, "uid-agent") != findPodUID(first, "uid-agent") {
		t.Error("an unchanged pod is a new *event.Pod")
	}

	// Modified in a way List does not show: a new resourceVersion, the
	// same values.
	before := storedRV(t, s, "default/web-1")
	web := webPod()
	web.Status.Conditions[0].Status = corev1.ConditionFalse
	web.Status.ContainerStatuses[0].RestartCount = 4
	web.ResourceVersion = "20"
	if _, err := pods.UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "status update not seen", func() string {
		if rv := storedRV(t, s, "default/web-1"); rv == before {
			return "resourceVersion still " + rv
		}
		return ""
	})
	if findPodUID(list(t, s), "uid-web-1") != findPodUID(first, "uid-web-1") {
		t.Error("a pod whose listed fields did not change is a new *event.Pod")
	}

	// Modified: new labels and addresses, a new value.
	web.Labels["tier"] = "back"
	web.Status.PodIPs = []corev1.PodIP{{IP: "10.244.1.6"}}
	web.ResourceVersion = "21"
	if _, err := pods.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wp.Labels["tier"] = "back"
	wp.IPs = []netip.Addr{netip.MustParseAddr("10.244.1.6")}
	poll(t, "updated pod not listed", func() string {
		if p := findPodUID(list(t, s), "uid-web-1"); !reflect.DeepEqual(*p, wp) {
			return fmt.Sprintf("got %+v", *p)
		}
		return ""
	})
	changed := list(t, s)
	checkSnapshot(t, changed, map[string][]event.Container{wp.UID: wc, ap.UID: ac}, wp, ap)
	if old := findPodUID(first, "uid-web-1"); findPodUID(changed, "uid-web-1") == old {
		t.Error("a changed pod is the same *event.Pod")
	} else if old.Labels["tier"] != "front" || len(old.IPs) != 2 {
		t.Errorf("the earlier value changed: %+v", *old)
	}
	if findPodUID(changed, "uid-agent") != findPodUID(first, "uid-agent") {
		t.Error("an unchanged pod is a new *event.Pod after another pod changed")
	}

	// Finished: listed without addresses, which the IPAM may hand out again.
	web.Status.Phase = corev1.PodSucceeded
	web.ResourceVersion = "22"
	if _, err := pods.UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "finished pod still has addresses", func() string {
		if p := findPodUID(list(t, s), "uid-web-1"); p == nil || p.IPs != nil {
			return fmt.Sprintf("got %+v", p)
		}
		return ""
	})

	// Deleted.
	if err := pods.Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "deleted pod still listed", func() string {
		if p := findPodUID(list(t, s), "uid-web-1"); p != nil {
			return "web-1 listed"
		}
		return ""
	})
	checkSnapshot(t, list(t, s), map[string][]event.Container{ap.UID: ac}, ap)
}

// storedRV is the resourceVersion of the informer's copy of a pod.
func storedRV(t *testing.T, s *KubeSource, key string) string {
	t.Helper()
	o, ok, err := s.informer.GetStore().GetByKey(key)
	if err != nil || !ok {
		t.Fatalf("%s not in the informer's store (%v)", key, err)
	}
	return o.(*kubePod).ResourceVersion
}

// A source that cannot list says why, in WaitForSync, List and Describe.
func TestKubeListFailure(t *testing.T) {
	f := newFakeKube(t, webPod())
	f.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`pods is forbidden: User "system:serviceaccount:x:y" cannot list resource "pods"`)
	})
	s := newKubeSource(f, "https://fake.example:6443", testNode, slog.New(slog.DiscardHandler))
	defer s.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := s.WaitForSync(ctx)
	if err == nil || !strings.Contains(err.Error(), "cannot list resource") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForSync = %v, want the deadline and the list error", err)
	}
	if _, err := s.List(t.Context()); err == nil || !strings.Contains(err.Error(), "not listed yet") || !strings.Contains(err.Error(), "cannot list resource") {
		t.Errorf("List = %v, want not listed yet and the list error", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	d, err := s.Describe(ctx)
	if d != "" || err == nil || !strings.HasPrefix(err.Error(), "Kubernetes v1.31.0 at https://fake.example:6443; node n1; listing its pods: ") ||
		!strings.Contains(err.Error(), "cannot list resource") {
		t.Errorf("Describe = %q, %v; want the server, the node and the list error", d, err)
	}
}

func TestKubeSlimPod(t *testing.T) {
	in := webPod()
	in.Spec.HostNetwork = true
	in.Status.PodIPs = nil // status.podIP alone, as servers before podIPs sent
	in.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "debug", ContainerID: "containerd://ffff", Image: "busybox", ImageID: "sha256:3"}}
	got, err := slimPod(in)
	if err != nil {
		t.Fatal(err)
	}
	kp, ok := got.(*kubePod)
	if !ok {
		t.Fatalf("slimPod returned %T", got)
	}
	if want := (metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "uid-web-1", ResourceVersion: "10"}); !reflect.DeepEqual(kp.ObjectMeta, want) {
		t.Errorf("ObjectMeta:\n got %+v\nwant %+v", kp.ObjectMeta, want)
	}
	wp, wc := wantWeb()
	wp.HostNetwork = true
	wp.IPs = []netip.Addr{netip.MustParseAddr("10.244.1.5")}
	wc = append(wc, event.Container{ID: "ffff", Name: "debug", Image: "busybox"})
	checkSnapshot(t, Snapshot{Pods: []*event.Pod{kp.pod}, Containers: kp.containers}, map[string][]event.Container{wp.UID: wc}, wp)

	if again, _ := slimPod(kp); again != any(kp) {
		t.Errorf("slimPod(slimPod(pod)) = %v, want its argument", again)
	}
	tomb, _ := slimPod(cache.DeletedFinalStateUnknown{Key: "default/web-1", Obj: webPod()})
	if _, ok := tomb.(cache.DeletedFinalStateUnknown).Obj.(*kubePod); !ok {
		t.Errorf("tombstone holds %T", tomb.(cache.DeletedFinalStateUnknown).Obj)
	}
}

func TestKubeStripRuntimeScheme(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"containerd://0123abcd", "0123abcd"},
		{"cri-o://0123abcd", "0123abcd"},
		{"docker://0123abcd", "0123abcd"},
		{"someruntime://0123abcd", "0123abcd"},
		{"0123abcd", "0123abcd"},
		{"", ""},
	} {
		if got := stripRuntimeScheme(tt.in); got != tt.want {
			t.Errorf("stripRuntimeScheme(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKubeConfigErrors(t *testing.T) {
	t.Run("missing kubeconfig", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope", "config")
		_, err := NewKubeSource(KubeOptions{Kubeconfig: path, NodeName: testNode})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("NewKubeSource = %v, want an error naming %s", err, path)
		}
	})
	t.Run("bad kubeconfig", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\nclusters: [}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := NewKubeSource(KubeOptions{Kubeconfig: path, NodeName: testNode})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("NewKubeSource = %v, want an error naming %s", err, path)
		}
	})
	t.Run("not in a cluster", func(t *testing.T) {
		t.Setenv("KUBERNETES_SERVICE_HOST", "")
		t.Setenv("KUBERNETES_SERVICE_PORT", "")
		_, err := NewKubeSource(KubeOptions{NodeName: testNode})
		if err == nil || !strings.Contains(err.Error(), "--kubeconfig") || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
			t.Errorf("NewKubeSource = %v, want an error naming KUBERNETES_SERVICE_HOST and --kubeconfig", err)
		}
	})
}

func TestKubeNodeName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_NAME", "from-env")
	if got, _ := nodeName("given"); got != "given" {
		t.Errorf("nodeName(given) = %q", got)
	}
	if got, _ := nodeName(""); got != "from-env" {
		t.Errorf("nodeName with NODE_NAME = %q", got)
	}
	t.Setenv("NODE_NAME", "")
	if got, _ := nodeName(""); got != host {
		t.Errorf("nodeName without NODE_NAME = %q, want %q", got, host)
	}
}

// apiServer speaks enough of the Kubernetes API's JSON for a pod informer:
// /version, a pod list, and a pod watch, both plain and streaming the
// initial list (watch-list, sendInitialEvents=true). Every pod request
// must carry the node's field selector.
type apiServer struct {
	t        testing.TB
	node     string
	pods     func(yield func(*corev1.Pod) bool) // the node's pods
	events   chan watch.Event                   // sent to every open watch
	pageSize int                                // pods a list page holds, 0 for one page
	mu       sync.Mutex
	requests []string // "list", "watch", "watch-list"
}

func (a *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/version":
		json.NewEncoder(w).Encode(version.Info{Major: "1", Minor: "31", GitVersion: "v1.31.0"})
		return
	case "/api/v1/pods":
	default:
		http.NotFound(w, r)
		return
	}
	if want := "fieldSelector=spec.nodeName%3D" + a.node; !slices.Contains(strings.Split(r.URL.RawQuery, "&"), want) {
		a.t.Errorf("pod request %s without %s", r.URL, want)
		http.Error(w, "no field selector", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	kind := "list"
	if q.Get("watch") == "true" {
		kind = "watch"
		if q.Get("sendInitialEvents") == "true" {
			kind = "watch-list"
		}
	}
	a.mu.Lock()
	a.requests = append(a.requests, kind)
	a.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if kind == "list" {
		// Pages of pageSize pods; the continue token is the next pod's index.
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "100"}}
		from, _ := strconv.Atoi(q.Get("continue"))
		i := 0
		for p := range a.pods {
			switch {
			case i < from:
			case a.pageSize > 0 && len(list.Items) == a.pageSize:
				list.Continue = strconv.Itoa(i)
			default:
				list.Items = append(list.Items, *p)
			}
			i++
		}
		json.NewEncoder(w).Encode(&list)
		return
	}
	enc := json.NewEncoder(w)
	send := func(typ watch.EventType, obj runtime.Object) bool {
		raw, err := json.Marshal(obj)
		if err != nil {
			a.t.Error(err)
			return false
		}
		return enc.Encode(metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: raw}}) == nil
	}
	if kind == "watch-list" {
		for p := range a.pods {
			p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
			if !send(watch.Added, p) {
				return
			}
		}
		send(watch.Bookmark, &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: "100", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
		})
	}
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-a.events:
			p := e.Object.(*corev1.Pod)
			p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
			if !send(e.Type, p) {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

func (a *apiServer) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// writeKubeconfig writes a kubeconfig for url and returns its path.
func writeKubeconfig(t testing.TB, url string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, url)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The whole way from a kubeconfig file over HTTP, as against a real API
// server (which the informer asks for a watch-list first).
func TestKubeAPIServer(t *testing.T) {
	// Pages of one pod: client-go's pager joins the pages streamPodList
	// decodes.
	a := &apiServer{t: t, node: testNode, events: make(chan watch.Event), pageSize: 1}
	a.pods = func(yield func(*corev1.Pod) bool) {
		_ = yield(webPod()) && yield(agentPod())
	}
	srv := httptest.NewServer(a)
	defer srv.Close()

	s, err := NewKubeSource(KubeOptions{Kubeconfig: writeKubeconfig(t, srv.URL), NodeName: testNode})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	wp, wc := wantWeb()
	ap, ac := wantAgent()
	checkSnapshot(t, list(t, s), map[string][]event.Container{wp.UID: wc, ap.UID: ac}, wp, ap)
	d, err := s.Describe(ctx)
	if want := "Kubernetes v1.31.0 at " + srv.URL + "; node n1; 2 pods"; d != want || err != nil {
		t.Errorf("Describe = %q, %v; want %q", d, err, want)
	}

	gone := agentPod()
	gone.ResourceVersion = "101"
	select {
	case a.events <- watch.Event{Type: watch.Deleted, Object: gone}:
	case <-ctx.Done():
		t.Fatal("no watch open")
	}
	poll(t, "pod deleted through the watch still listed", func() string {
		if findPodUID(list(t, s), "uid-agent") != nil {
			return "agent-x listed"
		}
		return ""
	})
	checkSnapshot(t, list(t, s), map[string][]event.Container{wp.UID: wc}, wp)

	// client-go asks for a watch-list unless KUBE_FEATURE_WatchListClient
	// is false, when it lists (streamPodList) and then watches.
	seen := a.seen()
	t.Logf("requests: %v", seen)
	if clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
		if len(seen) == 0 || seen[0] != "watch-list" {
			t.Errorf("requests %v, want a watch-list first", seen)
		}
	} else if len(seen) < 3 || seen[0] != "list" || seen[1] != "list" || seen[2] != "watch" {
		t.Errorf("requests %v, want a list in two pages then a watch", seen)
	}
	if os.Getenv("ROUTETRACE_KUBE_CHILD") != "" {
		return
	}
	// The feature gate is read once a process: list+watch in a child.
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKubeAPIServer$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "ROUTETRACE_KUBE_CHILD=1", "KUBE_FEATURE_WatchListClient=false")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "requests: [list list watch") {
		t.Errorf("list+watch in a child: %v\n%s", err, out)
	}
}

// streamPodList's errors: the server's, and a response that is not a pod
// list.
func TestKubeStreamPodListErrors(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"forbidden", `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden: User \"x\" cannot list resource \"pods\"","reason":"Forbidden","code":403}`, 403, "pods is forbidden"},
		{"truncated", `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"a"}},{"metad`, 200, "decoding the pod list"},
		{"not a pod list", `{"kind":"ConfigMapList","apiVersion":"v1","items":[]}`, 200, "not a PodList"},
		{"not an object", `[1]`, 200, "decoding the pod list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			_, err := streamPodList(t.Context(), restClient(t, srv.URL), metav1.ListOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("streamPodList = %v, want an error with %q", err, tt.want)
			}
		})
	}
	t.Run("fields in any order, unknown ones skipped", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"items":[{"metadata":{"name":"a","namespace":"n","uid":"u","resourceVersion":"3"}}],"extra":{"x":[1,2]},"metadata":{"resourceVersion":"7","continue":"c"},"kind":"PodList"}`)
		}))
		defer srv.Close()
		l, err := streamPodList(t.Context(), restClient(t, srv.URL), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.ResourceVersion != "7" || l.Continue != "c" || len(l.Items) != 1 {
			t.Fatalf("list %+v", l)
		}
		if kp := l.Items[0].(*kubePod); kp.Name != "a" || kp.Namespace != "n" || kp.UID != "u" || kp.ResourceVersion != "3" || kp.pod.Name != "a" {
			t.Errorf("item %+v", kp)
		}
	})
}

func restClient(t *testing.T, url string) *rest.RESTClient {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: url})
	if err != nil {
		t.Fatal(err)
	}
	return cs.CoreV1().RESTClient().(*rest.RESTClient)
}
