package enrich

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criapitest "k8s.io/cri-api/pkg/apis/testing"
)

func statusCalls(f *criapitest.FakeRuntimeService) int {
	n := 0
	for _, c := range f.GetCalls() {
		if c == "PodSandboxStatus" {
			n++
		}
	}
	return n
}

// The sandboxes' statuses are asked once each while they live, again only
// for one that was not ready and is now; the cache forgets removed ones.
func TestCRISourceCache(t *testing.T) {
	f := criapitest.NewFakeRuntimeService()
	s := &CRISource{socket: "/fake.sock", rs: f, sandboxes: map[string]sandboxNet{}}
	ctx := context.Background()
	run := func(name string) string {
		id, err := f.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name + "-uid"},
			Labels:   map[string]string{"app": name, "io.kubernetes.pod.name": name},
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a, b := run("a"), run("b")
	list := func() Snapshot {
		t.Helper()
		snap, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	ip := netip.MustParseAddr(criapitest.FakePodSandboxIPs[0])

	snap := list()
	if len(snap.Pods) != 2 || statusCalls(f) != 2 {
		t.Fatalf("first List: %d pods, %d status calls; want 2 and 2", len(snap.Pods), statusCalls(f))
	}
	for _, p := range snap.Pods {
		if len(p.IPs) != 1 || p.IPs[0] != ip || len(p.Labels) != 1 || p.Labels["app"] != p.Name {
			t.Errorf("pod %+v: want IPs [%v], labels {app: %s}", *p, ip, p.Name)
		}
	}
	list()
	if n := statusCalls(f); n != 2 {
		t.Errorf("second List: %d status calls in all, want still 2 (cached)", n)
	}

	// Stopped: listed without addresses, from the cache.
	f.StopPodSandbox(ctx, a)
	snap = list()
	if p := findPod(snap, "a"); p == nil || p.IPs != nil {
		t.Errorf("stopped pod a: %+v, want listed without IPs", p)
	}
	if n := statusCalls(f); n != 2 {
		t.Errorf("after a stopped: %d status calls, want 2", n)
	}

	// Removed: forgotten.
	f.RemovePodSandbox(ctx, a)
	list()
	if _, ok := s.sandboxes[a]; ok || len(s.sandboxes) != 1 {
		t.Errorf("after a removed: cache %v, want only %s", s.sandboxes, b)
	}

	// First seen not ready, then ready: asked again for its addresses.
	c := run("c")
	f.Lock()
	f.Sandboxes[c].State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	f.Unlock()
	if p := findPod(list(), "c"); p == nil || p.IPs != nil {
		t.Errorf("not-ready pod c: %+v, want listed without IPs", p)
	}
	f.Lock()
	f.Sandboxes[c].State = runtimeapi.PodSandboxState_SANDBOX_READY
	f.Unlock()
	before := statusCalls(f)
	if p := findPod(list(), "c"); p == nil || len(p.IPs) != 1 {
		t.Errorf("pod c once ready: %+v, want its IP", p)
	}
	if n := statusCalls(f) - before; n != 1 {
		t.Errorf("pod c once ready: %d status calls, want 1", n)
	}

	// A sandbox removed between the list and its status is left out.
	d := run("d")
	f.InjectError("PodSandboxStatus", status.Error(codes.NotFound, "gone"))
	snap = list()
	if findPod(snap, "d") != nil {
		t.Errorf("pod d, not found by its status, was listed")
	}
	if _, ok := s.sandboxes[d]; ok {
		t.Errorf("pod d cached though its status failed")
	}

	// Other errors name the socket and the fix.
	f.InjectError("ListPodSandbox", errors.New("boom"))
	if _, err := s.List(ctx); err == nil || !strings.Contains(err.Error(), "listing pod sandboxes at /fake.sock: boom") || !strings.Contains(err.Error(), "--cri-socket") {
		t.Errorf("List with ListPodSandbox failing: %v", err)
	}
	f.InjectError("PodSandboxStatus", errors.New("boom"))
	s.forget(nil)
	if _, err := s.List(ctx); err == nil || !strings.Contains(err.Error(), "status at /fake.sock: boom") {
		t.Errorf("List with PodSandboxStatus failing: %v", err)
	}
}
