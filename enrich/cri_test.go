package enrich

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/containerdtest"
)

func listCtx(t *testing.T, s *CRISource) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func findPod(snap Snapshot, name string) *event.Pod {
	for _, p := range snap.Pods {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// checkPod compares every field of the listed pod with what the harness
// made.
func checkPod(t *testing.T, got *event.Pod, want *containerdtest.Pod, labels map[string]string, ips []netip.Addr) {
	t.Helper()
	if got == nil {
		t.Fatalf("pod %s/%s not listed", want.Namespace, want.Name)
	}
	w := event.Pod{Name: want.Name, Namespace: want.Namespace, UID: want.UID, Labels: labels, IPs: ips, HostNetwork: want.HostNetwork}
	if !reflect.DeepEqual(*got, w) {
		t.Errorf("pod %s:\n got %+v\nwant %+v", want.Name, *got, w)
	}
}

func checkContainers(t *testing.T, snap Snapshot, want map[string]event.Container) {
	t.Helper()
	if len(snap.Containers) != len(want) {
		t.Errorf("%d containers listed, want %d", len(snap.Containers), len(want))
	}
	for _, c := range snap.Containers {
		w, ok := want[c.ID]
		if !ok {
			t.Errorf("unexpected container %+v", *c)
			continue
		}
		if c.Name != w.Name || c.Image != w.Image || c.Pod != w.Pod {
			t.Errorf("container %.12s: got {%s %s pod %p}, want {%s %s pod %p}", c.ID, c.Name, c.Image, c.Pod, w.Name, w.Image, w.Pod)
		}
	}
}

func TestCRISourceListsPods(t *testing.T) {
	r := containerdtest.Start(t)
	webLabels := map[string]string{"app": "web", "tier": "front"}
	web := r.RunPod(t, containerdtest.PodSpec{
		Name: "web-0", Namespace: "shop", UID: "11111111-2222-4333-8444-555555555555",
		// The kubelet's own labels are not the pod's.
		Labels: map[string]string{"app": "web", "tier": "front", "io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.uid": "x"},
	})
	dbLabels := map[string]string{"app": "db"}
	db := r.RunPod(t, containerdtest.PodSpec{
		Name: "db-0", Namespace: "data", UID: "66666666-7777-4888-9999-aaaaaaaaaaaa", Labels: dbLabels,
	})
	// A host-network pod has no addresses of its own.
	agent := r.RunPod(t, containerdtest.PodSpec{
		Name: "agent-x", Namespace: "kube-system", UID: "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff", HostNetwork: true,
	})
	webCtr := r.RunContainer(t, web, "nginx")
	dbCtr := r.RunContainer(t, db, "postgres")
	agentCtr := r.RunContainer(t, agent, "agent")

	s, err := NewCRISource(r.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Name() != "cri" {
		t.Errorf("Name() = %q", s.Name())
	}
	desc, err := s.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(desc, "containerd 1.") || !strings.HasSuffix(desc, " (CRI v1) at "+r.Socket()) {
		t.Errorf("Describe() = %q, want containerd 1.x (CRI v1) at %s", desc, r.Socket())
	}
	t.Logf("Describe: %s", desc)

	snap := listCtx(t, s)
	if len(snap.Pods) != 3 {
		t.Fatalf("%d pods listed, want 3: %+v", len(snap.Pods), snap.Pods)
	}
	gotWeb, gotDB, gotAgent := findPod(snap, "web-0"), findPod(snap, "db-0"), findPod(snap, "agent-x")
	checkPod(t, gotWeb, web, webLabels, []netip.Addr{web.IP})
	checkPod(t, gotDB, db, dbLabels, []netip.Addr{db.IP})
	checkPod(t, gotAgent, agent, nil, nil)
	checkContainers(t, snap, map[string]event.Container{
		webCtr:   {Name: "nginx", Image: containerdtest.BusyboxImage, Pod: gotWeb},
		dbCtr:    {Name: "postgres", Image: containerdtest.BusyboxImage, Pod: gotDB},
		agentCtr: {Name: "agent", Image: containerdtest.BusyboxImage, Pod: gotAgent},
	})
	if n := s.cachedSandboxes(); n != 3 {
		t.Errorf("%d sandboxes cached, want 3", n)
	}
	// The rest is about pods with networks of their own.
	r.RemovePod(t, agent)

	// Lists at once, from several goroutines, agree (the agent is gone).
	var wg sync.WaitGroup
	snaps := make([]Snapshot, 4)
	errs := make([]error, 4)
	for i := range snaps {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			snaps[i], errs[i] = s.List(ctx)
		})
	}
	wg.Wait()
	for i := range snaps {
		if errs[i] != nil {
			t.Fatalf("concurrent List %d: %v", i, errs[i])
		}
		if len(snaps[i].Pods) != 2 || len(snaps[i].Containers) != 2 {
			t.Errorf("concurrent List %d: %d pods, %d containers, want 2 and 2", i, len(snaps[i].Pods), len(snaps[i].Containers))
		}
		checkPod(t, findPod(snaps[i], "web-0"), web, webLabels, []netip.Addr{web.IP})
	}

	// A removed pod is gone, and so is its cache entry.
	r.RemovePod(t, web)
	snap = listCtx(t, s)
	if len(snap.Pods) != 1 || findPod(snap, "web-0") != nil {
		t.Fatalf("after removing web-0: pods %+v, want db-0 alone", snap.Pods)
	}
	gotDB = findPod(snap, "db-0")
	checkPod(t, gotDB, db, dbLabels, []netip.Addr{db.IP})
	checkContainers(t, snap, map[string]event.Container{
		dbCtr: {Name: "postgres", Image: containerdtest.BusyboxImage, Pod: gotDB},
	})
	s.mu.Lock()
	_, cached := s.sandboxes[web.SandboxID]
	n := len(s.sandboxes)
	s.mu.Unlock()
	if cached || n != 1 {
		t.Errorf("after removing web-0: its sandbox cached %v, %d cached, want false and 1", cached, n)
	}

	// A stopped pod is still listed, with its container, but without the
	// addresses CNI DEL released.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.RuntimeService().StopPodSandbox(ctx, db.SandboxID); err != nil {
		t.Fatal(err)
	}
	snap = listCtx(t, s)
	gotDB = findPod(snap, "db-0")
	checkPod(t, gotDB, db, dbLabels, nil)
	checkContainers(t, snap, map[string]event.Container{
		dbCtr: {Name: "postgres", Image: containerdtest.BusyboxImage, Pod: gotDB},
	})

	// An expired deadline is honoured, and the error names the socket.
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	t0 := time.Now()
	if _, err := s.List(expired); err == nil || !strings.Contains(err.Error(), r.Socket()) || !strings.Contains(err.Error(), "--cri-socket") {
		t.Errorf("List with an expired deadline: %v, want an error naming %s and --cri-socket", err, r.Socket())
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("List with an expired deadline took %v", d)
	}
}

func TestNewCRISourceErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.sock")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct{ endpoint, want string }{
		{"unix://" + filepath.Join(dir, "none.sock"), filepath.Join(dir, "none.sock")},
		{filepath.Join(dir, "none.sock"), "no such file"},
		{file, "not a socket"},
		{"tcp://127.0.0.1:1", "neither unix:///path nor an absolute path"},
	} {
		s, err := NewCRISource(tc.endpoint)
		if err == nil {
			s.Close()
			t.Errorf("NewCRISource(%q) succeeded", tc.endpoint)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewCRISource(%q): %v, want it to say %q", tc.endpoint, err, tc.want)
		}
	}
	// A socket nobody serves CRI on.
	sock := filepath.Join(dir, "dead.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, nothing listens
	t0 := time.Now()
	if _, err := NewCRISource(sock); err == nil || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "is the container runtime running?") {
		t.Errorf("NewCRISource on a dead socket: %v, want the socket and the fix named", err)
	} else {
		t.Logf("dead socket, after %v: %v", time.Since(t0).Round(time.Millisecond), err)
	}
}

func TestDetectCRISocket(t *testing.T) {
	dir := t.TempDir()
	paths := make([]string, len(criSockets))
	for i, p := range criSockets {
		paths[i] = filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(paths[i]), 0o755)
	}
	if ep, ok := detectCRISocket(paths); ok {
		t.Fatalf("nothing there, found %q", ep)
	}
	// The first path holds a plain file: not a socket, skipped.
	os.WriteFile(paths[0], nil, 0o600)
	for _, i := range []int{2, 4} {
		l, err := net.Listen("unix", paths[i])
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	if ep, ok := detectCRISocket(paths); !ok || ep != "unix://"+paths[2] {
		t.Errorf("detectCRISocket = %q, %v; want unix://%s", ep, ok, paths[2])
	}
	if !reflect.DeepEqual(criSockets, []string{
		"/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/crio/crio.sock",
		"/run/k3s/containerd/containerd.sock", "/run/cri-dockerd.sock",
	}) {
		t.Errorf("criSockets = %q", criSockets)
	}
}

func TestImageName(t *testing.T) {
	id := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		c    *runtimeapi.Container
		want string
	}{
		{&runtimeapi.Container{Image: &runtimeapi.ImageSpec{Image: "nginx:1"}, ImageRef: id}, "nginx:1"},
		{&runtimeapi.Container{Image: &runtimeapi.ImageSpec{Image: id, UserSpecifiedImage: "nginx:1"}, ImageRef: id}, "nginx:1"},
		{&runtimeapi.Container{Image: &runtimeapi.ImageSpec{Image: strings.Repeat("ab", 32)}, ImageRef: "docker.io/library/nginx@sha256:" + strings.Repeat("cd", 32)}, "docker.io/library/nginx@sha256:" + strings.Repeat("cd", 32)},
		{&runtimeapi.Container{Image: &runtimeapi.ImageSpec{Image: id}, ImageRef: id}, id},
		{&runtimeapi.Container{ImageRef: id}, id},
		{&runtimeapi.Container{}, ""},
	} {
		if got := imageName(tc.c); got != tc.want {
			t.Errorf("imageName(%v) = %q, want %q", tc.c, got, tc.want)
		}
	}
	if got := podLabels(map[string]string{"io.kubernetes.pod.name": "x"}); got != nil {
		t.Errorf("podLabels of kubelet labels only = %v, want nil", got)
	}
}
