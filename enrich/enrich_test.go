package enrich

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

func TestProcCacheKeepsWhatIsUsed(t *testing.T) {
	c := newProcCache(4)
	for i := uint64(1); i <= 4; i++ {
		c.put(i, &procEntry{proc: &event.Process{Exe: fmt.Sprint(i)}})
	}
	c.get(1) // networkd keeps acting: a second chance
	c.put(5, &procEntry{})
	if c.get(1) == nil {
		t.Error("a used entry was evicted before unused ones")
	}
	if c.get(2) != nil {
		t.Error("the oldest unused entry was kept")
	}
	if c.len() != 4 {
		t.Errorf("len = %d, want 4", c.len())
	}
	for i := uint64(6); i < 100; i++ {
		c.put(i, &procEntry{})
	}
	if c.len() != 4 {
		t.Errorf("len = %d after 100 puts, want 4", c.len())
	}
}

func TestCountIn(t *testing.T) {
	pods := []*event.Pod{
		{UID: "a", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("fd00::2")}},
		{UID: "b", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.3")}},
		{UID: "c", IPs: []netip.Addr{netip.MustParseAddr("10.244.2.9")}},
		{UID: "h", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, HostNetwork: true},
	}
	x := buildIndex(1, "cri", []Snapshot{{Pods: pods}})
	for _, tt := range []struct {
		p    string
		want int
	}{{"10.244.1.0/24", 2}, {"10.244.0.0/16", 3}, {"10.244.2.0/24", 1}, {"10.245.0.0/16", 0}, {"fd00::/64", 1}, {"192.0.2.0/24", 0}} {
		if got := x.countIn(netip.MustParsePrefix(tt.p)); got != tt.want {
			t.Errorf("countIn(%s) = %d, want %d", tt.p, got, tt.want)
		}
	}
	if x.byIP[netip.MustParseAddr("10.244.1.3")] != pods[1] {
		t.Error("byIP does not name pod b")
	}
	if x.byIP[netip.MustParseAddr("192.0.2.1")] != nil {
		t.Error("a host-network pod is named as the victim of a node address")
	}
}

func TestBuildIndexMergesSources(t *testing.T) {
	// CRI knows the container, the Kubernetes API the pod's labels: the
	// container points at the labelled pod.
	criPod := &event.Pod{Name: "web", Namespace: "shop", UID: "u1"}
	kubePod := &event.Pod{Name: "web", Namespace: "shop", UID: "u1", Labels: map[string]string{"app": "web"}}
	c := &event.Container{ID: "c1", Name: "nginx", Pod: criPod}
	x := buildIndex(3, "cri+kubernetes", []Snapshot{{Pods: []*event.Pod{criPod}, Containers: []*event.Container{c}}, {Pods: []*event.Pod{kubePod}}})
	got := x.containers["c1"]
	if got == nil || got.Pod != kubePod || got.Name != "nginx" {
		t.Fatalf("container c1 = %+v, want nginx in the labelled pod", got)
	}
	if c.Pod != criPod {
		t.Error("the source's container value was changed")
	}
}

func TestDeepestCgroup(t *testing.T) {
	const hybrid = "9:name=systemd:/system.slice/foo.service\n4:memory:/process_api/abc\n3:cpu:/\n0::/\n"
	if p, h := deepestCgroup(hybrid); p != "/system.slice/foo.service" || h != "name=systemd" {
		t.Errorf("hybrid: %q %q", p, h)
	}
	const unified = "0::/system.slice/systemd-networkd.service\n"
	if p, h := deepestCgroup(unified); p != "/system.slice/systemd-networkd.service" || h != "cgroup2" {
		t.Errorf("unified: %q %q", p, h)
	}
	const tie = "4:memory:/a/b\n0::/a/c\n"
	if p, h := deepestCgroup(tie); p != "/a/c" || h != "cgroup2" {
		t.Errorf("tie: %q %q (cgroup2 wins)", p, h)
	}
}

// fakeSource stands in for a pod source in the stage's own tests (the CRI
// source is tested against a real containerd): it answers what it is given.
type fakeSource struct {
	mu    sync.Mutex
	snap  Snapshot
	err   error
	lists int
}

func (f *fakeSource) Name() string                                 { return "fake" }
func (f *fakeSource) Describe(ctx context.Context) (string, error) { return "fake", nil }
func (f *fakeSource) Close() error                                 { return nil }
func (f *fakeSource) List(ctx context.Context) (Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return f.snap, f.err
}
func (f *fakeSource) set(s Snapshot) { f.mu.Lock(); f.snap = s; f.mu.Unlock() }

const (
	idA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	idB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func podCgroup(uid, id string) string {
	u := []byte(uid)
	for i := range u {
		if u[i] == '-' {
			u[i] = '_'
		}
	}
	return "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + string(u) + ".slice/cri-containerd-" + id + ".scope"
}

func newTestEnricher(t *testing.T, src Source, wait time.Duration) *Enricher {
	t.Helper()
	e, err := New(Options{Sources: []Source{src}, Wait: wait, CNIConfDir: t.TempDir(), Netns: []string{"/proc/self/ns/net"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// A change by a container started after the last pod listing is held
// until the listing names it; the events behind it keep their order.
func TestStageHoldsForANewContainer(t *testing.T) {
	const uid = "11111111-2222-3333-4444-555555555555"
	pod := &event.Pod{Name: "web", Namespace: "shop", UID: uid}
	src := &fakeSource{}
	e := newTestEnricher(t, src, 5*time.Second)
	waitFor(t, "the first pod listing", func() bool { return e.stats.Refreshes.Load() >= 1 })

	var mu sync.Mutex
	var got []event.Event
	s := e.NewStage(func(ev *event.Event) { mu.Lock(); got = append(got, *ev); mu.Unlock() })
	s.AddProcess(&tracer.Process{Cookie: 7, Tgid: 70, Argv: []string{"ip", "route", "del", "10.0.0.0/8"}, Exe: "/bin/ip",
		Cgroup: podCgroup(uid, idA), Cgroup2: true})
	s.AddProcess(&tracer.Process{Cookie: 8, Tgid: 80, Argv: []string{"bird"}, Cgroup: "/system.slice/bird.service", Cgroup2: true})

	// The container appears in the runtime just after the change.
	src.set(Snapshot{Pods: []*event.Pod{pod}, Containers: []*event.Container{{ID: idA, Name: "tool", Pod: pod}}})
	s.Write(&event.Event{Seq: 1, Actor: event.Actor{Tgid: 70, Cookie: 7}})
	s.Write(&event.Event{Seq: 2, Actor: event.Actor{Tgid: 80, Cookie: 8}})
	waitFor(t, "the held events", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(got) == 2 })
	s.Close()

	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("events out of order or missing: %+v", got)
	}
	p := got[0].Actor.Process
	if p == nil || p.Container == nil || p.Container.Pod != pod || p.Container.Name != "tool" || p.EnrichError != "" {
		t.Fatalf("held event's process = %+v, want container tool in shop/web", p)
	}
	if p.Cmdline[0] != "ip" || p.Exe != "/bin/ip" || p.ContainerID != idA || p.PodUID != uid {
		t.Errorf("process = %+v", p)
	}
	if u := got[1].Actor.Process; u == nil || u.Unit != "bird.service" {
		t.Errorf("second event's process = %+v, want unit bird.service", u)
	}
	if e.stats.Held.Load() != 2 || e.stats.HeldTimedOut.Load() != 0 {
		t.Errorf("held %d, timed out %d; want 2 held (the second behind the first), 0 timed out", e.stats.Held.Load(), e.stats.HeldTimedOut.Load())
	}
}

// A container no source ever names is waited for once, then marked; the
// next change by it is not held again.
func TestStageGivesUpAndSaysSo(t *testing.T) {
	const uid = "11111111-2222-3333-4444-555555555555"
	src := &fakeSource{err: errors.New("connection refused")}
	e := newTestEnricher(t, src, 200*time.Millisecond)
	var got []event.Event
	s := e.NewStage(func(ev *event.Event) { got = append(got, *ev) })
	s.AddProcess(&tracer.Process{Cookie: 9, Tgid: 90, Cgroup: podCgroup(uid, idB), Cgroup2: true})
	s.Write(&event.Event{Seq: 1, Actor: event.Actor{Tgid: 90, Cookie: 9}})
	waitFor(t, "the held event", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(got) == 1 })
	s.Write(&event.Event{Seq: 2, Actor: event.Actor{Tgid: 90, Cookie: 9}})
	s.mu.Lock()
	n := len(got)
	s.mu.Unlock()
	if n != 2 {
		t.Errorf("the second change by an unknown container was held again (%d sent)", n)
	}
	s.Close()
	p := got[0].Actor.Process
	if p == nil || p.Container != nil || p.ContainerID != idB || p.PodUID != uid || p.EnrichError != "container not known to fake" {
		t.Errorf("process = %+v", p)
	}
	if e.stats.HeldTimedOut.Load() != 1 {
		t.Errorf("timed out = %d, want 1", e.stats.HeldTimedOut.Load())
	}
}

func TestEnrichAllocs(t *testing.T) {
	e := newTestEnricher(t, &fakeSource{}, time.Second)
	e.AddProcess(&tracer.Process{Cookie: 5, Tgid: 50, Cgroup: "/system.slice/systemd-networkd.service", Cgroup2: true})
	ev := &event.Event{Object: event.ObjectRoute, Dst: netip.MustParsePrefix("10.1.2.3/32"), Oif: 3, Actor: event.Actor{Tgid: 50, Cookie: 5}}
	if n := testing.AllocsPerRun(1000, func() { ev.Actor.Process = nil; e.Enrich(ev) }); n != 0 {
		t.Errorf("Enrich allocates %.1f times per event", n)
	}
	if ev.Actor.Process == nil || ev.Actor.Process.Unit != "systemd-networkd.service" {
		t.Errorf("process = %+v", ev.Actor.Process)
	}
}

// The pod cache's share of the 64 MiB budget with 10,000 pods of three
// containers each: the sources' values and the index.
func TestPodCacheMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	snap := generate(10000)
	x := buildIndex(1, "synthetic", []Snapshot{snap})
	runtime.GC()
	runtime.ReadMemStats(&after)
	mib := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	t.Logf("10,000 pods, 30,000 containers: %.1f MiB of heap", mib)
	if x.pods != 10000 || len(x.containers) != 30000 || len(x.ips) != 10000 {
		t.Fatalf("index: %d pods, %d containers, %d addresses", x.pods, len(x.containers), len(x.ips))
	}
	if mib > 24 {
		t.Errorf("%.1f MiB for 10,000 pods: more than 24 MiB of the tracer's 64", mib)
	}
	runtime.KeepAlive(snap)
	runtime.KeepAlive(x)
}

// A cause's actor with no kernel record (tiers 1-2 stamp none on kernel
// removals) is named from /proc while it runs: here, this test process.
func TestActorWithoutRecordFromProc(t *testing.T) {
	e := newTestEnricher(t, &fakeSource{}, time.Second)
	ev := &event.Event{Actor: event.Actor{Kernel: true}, Cause: event.Cause{Valid: true,
		Actor: event.Actor{Tgid: uint32(os.Getpid())}}}
	e.Enrich(ev)
	p := ev.Cause.Actor.Process
	if p == nil || len(p.Cmdline) == 0 || p.Cmdline[0] != os.Args[0] || p.Exe == "" {
		t.Fatalf("cause actor's process = %+v, want this test's command line", p)
	}
	if want, _ := deepestCgroup(mustRead(t, "/proc/self/cgroup")); p.Cgroup != want {
		t.Errorf("cgroup = %q, want %q", p.Cgroup, want)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
