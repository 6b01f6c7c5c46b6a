package enrich

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	clientfeatures "k8s.io/client-go/features"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// bigPod is a pod as a Deployment on a busy node has it: three containers
// with env, probes, mounts and resources, the service account volume,
// tolerations, conditions, and the managedFields of the controller
// manager and the kubelet. About 9 KB of JSON.
func bigPod(i int) *corev1.Pod {
	name := fmt.Sprintf("app-%d-7d9c8b6f5-x%05d", i%50, i)
	ns := fmt.Sprintf("team-%d", i%40)
	hash := "7d9c8b6f5"
	labels := map[string]string{
		"app.kubernetes.io/name":     fmt.Sprintf("app-%d", i%50),
		"app.kubernetes.io/instance": fmt.Sprintf("app-%d-prod", i%50),
		"app.kubernetes.io/version":  "1.4.2",
		"pod-template-hash":          hash,
		"team":                       ns,
	}
	ip := fmt.Sprintf("10.%d.%d.%d", 244+i/65536, (i/256)%256, i%256)
	ip6 := fmt.Sprintf("fd00:10:244::%x", i)
	mf := func(manager, op, sub string) metav1.ManagedFieldsEntry {
		t := metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
		raw := `{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/instance":{},"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/version":{},"f:pod-template-hash":{},"f:team":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"` + strconv.Itoa(i) + `\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{".":{},"k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}}},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:httpGet":{".":{},"f:path":{},"f:port":{}}},"f:name":{},"f:ports":{},"f:resources":{".":{},"f:limits":{},"f:requests":{}}}}}}`
		if sub == "status" {
			raw = `{"f:status":{"f:conditions":{"k:{\"type\":\"ContainersReady\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Initialized\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:hostIPs":{},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\"` + ip + `\"}":{".":{},"f:ip":{}}},"f:startTime":{}}}`
		}
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &t,
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(raw)}, Subresource: sub}
	}
	var containers []corev1.Container
	var statuses []corev1.ContainerStatus
	for c, cname := range []string{"app", "proxy", "log-shipper"} {
		image := fmt.Sprintf("registry.example.com/%s/%s:1.4.%d", ns, cname, c)
		var env []corev1.EnvVar
		for e := range 8 {
			env = append(env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", e), Value: fmt.Sprintf("value-%d-%d", i, e)})
		}
		probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080 + int32(c))}},
			PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}
		containers = append(containers, corev1.Container{
			Name: cname, Image: image, Args: []string{"--config=/etc/app/config.yaml", "--port=" + strconv.Itoa(8080+c)},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080 + int32(c), Protocol: corev1.ProtocolTCP}},
			Env:   env,
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "config", MountPath: "/etc/app"},
				{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
			},
			LivenessProbe: probe, ReadinessProbe: probe,
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy: corev1.PullIfNotPresent,
		})
		statuses = append(statuses, corev1.ContainerStatus{
			Name: cname, Image: image, ImageID: image + "@sha256:" + strings.Repeat("ab", 32),
			ContainerID: fmt.Sprintf("containerd://%064x", i*3+c), Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 1, 0, time.UTC))}},
		})
	}
	now := metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 2, 0, time.UTC))
	var conds []corev1.PodCondition
	for _, ct := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		conds = append(conds, corev1.PodCondition{Type: ct, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)),
			ResourceVersion: strconv.Itoa(1000 + i), GenerateName: name[:len(name)-6], CreationTimestamp: now,
			Labels:          labels,
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-01T00:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name[:len(name)-7], UID: types.UID(strconv.Itoa(i)), Controller: new(true), BlockOwnerDeletion: new(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{mf("kube-controller-manager", "Update", ""), mf("kubelet", "Update", "status")},
		},
		Spec: corev1.PodSpec{
			NodeName: testNode, Containers: containers, ServiceAccountName: "default", RestartPolicy: corev1.RestartPolicyAlways,
			DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler", TerminationGracePeriodSeconds: new(int64(30)),
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
				{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3607))}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}},
			},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, Conditions: conds, HostIP: "192.0.2.1", HostIPs: []corev1.HostIP{{IP: "192.0.2.1"}},
			PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}, {IP: ip6}}, StartTime: &now, QOSClass: corev1.PodQOSBurstable,
			ContainerStatuses: statuses,
		},
	}
}

// heapSampler follows the heap's live objects every millisecond and keeps
// the highest value.
type heapSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	max  uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.done.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			h.max = max(h.max, s[0].Value.Uint64())
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	})
	return h
}

func (h *heapSampler) peak() uint64 {
	close(h.stop)
	h.done.Wait()
	return h.max
}

// heapAfterGC is the heap in use once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// procStatus reads a "VmRSS"-style line of /proc/self/status, in bytes.
func procStatus(key string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// memResult is what one child process of TestKubeMemory10kPods measured.
type memResult struct {
	Mode      string
	SyncTook  time.Duration
	HeapHeld  uint64 // heap in use after GC, over the baseline before connecting
	HeapPeak  uint64 // highest live heap while syncing, over the baseline
	BaseRSS   uint64 // VmRSS before connecting
	RSS       uint64 // VmRSS after sync
	PeakRSS   uint64 // VmHWM of the whole process
	ListAdds  uint64 // heap a Snapshot adds while held
	ListAgain time.Duration
	Requests  []string
}

const memPods = 10000

// TestKubeMemory10kPods fills the informer with 10,000 pods of three
// containers each, served as JSON the way an API server streams them, and
// reports the heap and RSS they cost: with slimPod, over watch-list (what
// client-go asks first) and over list+watch (what it falls back to), and
// without a transform for comparison. Each runs in a child process, so
// that the numbers are the client's alone: the fake API server runs here.
// The product's budget is 64 MiB RSS for the whole tracer.
func TestKubeMemory10kPods(t *testing.T) {
	if mode := os.Getenv("ROUTETRACE_KUBE_MEM_MODE"); mode != "" {
		memChild(t, mode)
		return
	}
	if testing.Short() {
		t.Skip("fills informers with 10,000 pods, three times")
	}
	a := &apiServer{t: t, node: testNode, events: make(chan watch.Event)}
	a.pods = func(yield func(*corev1.Pod) bool) {
		for i := range memPods {
			if !yield(bigPod(i)) {
				return
			}
		}
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	kubeconfig := writeKubeconfig(t, srv.URL)
	js, _ := json.Marshal(bigPod(1))
	t.Logf("%d pods of %d bytes of JSON each (%s in all)", memPods, len(js), mib(uint64(memPods*len(js))))

	for _, run := range []struct{ mode, watchList string }{
		{"slim", "true"}, {"slim", "false"}, {"no-transform", "true"},
	} {
		out := filepath.Join(t.TempDir(), "result.json")
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKubeMemory10kPods$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "ROUTETRACE_KUBE_MEM_MODE="+run.mode, "ROUTETRACE_KUBE_MEM_OUT="+out,
			"ROUTETRACE_KUBE_MEM_KUBECONFIG="+kubeconfig, "KUBE_FEATURE_WatchListClient="+run.watchList)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s (watch-list %s): %v\n%s", run.mode, run.watchList, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var r memResult
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		t.Logf("%-12s requests %v: synced in %v; heap held %s (%d bytes a pod), peak %s while syncing; RSS %s before connecting, %s after sync, peak %s",
			r.Mode, r.Requests, r.SyncTook.Round(time.Millisecond), mib(r.HeapHeld), r.HeapHeld/memPods, mib(r.HeapPeak), mib(r.BaseRSS), mib(r.RSS), mib(r.PeakRSS))
		if r.Mode == "slim" {
			t.Logf("%-12s a Snapshot of all pods adds %s while held; a List that reuses every pod takes %v", "", mib(r.ListAdds), r.ListAgain.Round(time.Microsecond))
			if budget := uint64(24 << 20); run.watchList == "true" && r.HeapHeld > budget {
				t.Errorf("10,000 pods hold %s of heap, more than %s of the tracer's 64 MiB", mib(r.HeapHeld), mib(budget))
			}
		}
	}
}

// memChild is one measurement of TestKubeMemory10kPods, in a process of
// its own.
func memChild(t *testing.T, mode string) {
	kubeconfig := os.Getenv("ROUTETRACE_KUBE_MEM_KUBECONFIG")
	r := memResult{Mode: mode}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	base := heapAfterGC()
	r.BaseRSS = procStatus("VmRSS")
	h := sampleHeap()
	began := time.Now()
	var count func() int
	switch mode {
	case "slim":
		s, err := NewKubeSource(KubeOptions{Kubeconfig: kubeconfig, NodeName: testNode})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
		r.SyncTook = time.Since(began)
		count = func() int { return len(s.informer.GetStore().ListKeys()) }

		held := heapAfterGC()
		snap, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Pods) != memPods || len(snap.Containers) != 3*memPods {
			t.Fatalf("List: %d pods, %d containers", len(snap.Pods), len(snap.Containers))
		}
		r.ListAdds = heapAfterGC() - held
		began := time.Now()
		again, _ := s.List(ctx)
		r.ListAgain = time.Since(began)
		runtime.KeepAlive(snap)
		runtime.KeepAlive(again)
	case "no-transform":
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		inf := coreinformers.NewFilteredPodInformer(kubernetes.NewForConfigOrDie(cfg), metav1.NamespaceAll, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName=" + testNode })
		go inf.RunWithContext(ctx)
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			t.Fatal("not synced")
		}
		r.SyncTook = time.Since(began)
		count = func() int { return len(inf.GetStore().ListKeys()) }
	default:
		t.Fatalf("mode %q", mode)
	}
	r.HeapPeak = h.peak() - base
	r.HeapHeld = heapAfterGC() - base
	r.RSS, r.PeakRSS = procStatus("VmRSS"), procStatus("VmHWM")
	if n := count(); n != memPods {
		t.Fatalf("%d pods cached, want %d", n, memPods)
	}
	if clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
		r.Requests = []string{"watch-list"}
	} else {
		r.Requests = []string{"list+watch"}
	}
	b, _ := json.Marshal(r)
	if err := os.WriteFile(os.Getenv("ROUTETRACE_KUBE_MEM_OUT"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
