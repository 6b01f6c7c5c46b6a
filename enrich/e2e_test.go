package enrich

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/containerdtest"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/rtnl"
	"github.com/routetrace/routetrace/tracer"
)

// session is a tracer and an enricher running as `routetrace trace` runs
// them, collecting the enriched events.
type session struct {
	t      *testing.T
	enr    *Enricher
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	events []event.Event
}

func startEnriched(t *testing.T, opts Options) *session {
	t.Helper()
	testnet.RequireRoot(t)
	enr, err := New(opts)
	if err != nil {
		t.Fatalf("starting enrichment: %v", err)
	}
	s := &session{t: t, enr: enr, done: make(chan error, 1)}
	stage := enr.NewStage(func(ev *event.Event) {
		s.mu.Lock()
		s.events = append(s.events, *ev)
		s.mu.Unlock()
	})
	tr, err := tracer.New(tracer.Options{Capture: os.Getenv("ROUTETRACE_CAPTURE"), OnProcess: stage.AddProcess})
	if err != nil {
		enr.Close()
		t.Fatalf("starting the tracer: %v", err)
	}
	enr.WaitForPods()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		err := tr.Run(ctx, stage.Write)
		stage.Close()
		s.done <- err
	}()
	t.Cleanup(func() {
		s.stop()
		tr.Close()
		enr.Close()
	})
	return s
}

func (s *session) stop() []event.Event {
	if s.cancel != nil {
		s.cancel()
		if err := <-s.done; err != nil {
			s.t.Errorf("tracer: %v", err)
		}
		s.cancel = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// findRoute returns the successful changes of a route in one namespace.
func findRoute(evs []event.Event, netns uint32, op event.Op, dst netip.Prefix) []event.Event {
	var out []event.Event
	for _, ev := range evs {
		if ev.Object == event.ObjectRoute && ev.Netns == netns && ev.Op == op && ev.Dst == dst && ev.Errno == 0 && ev.Table == 254 {
			out = append(out, ev)
		}
	}
	return out
}

func netnsOf(t *testing.T, path string) uint32 {
	t.Helper()
	ino, err := rtnl.NetnsInode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func describeEvents(evs []event.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s %s %s table %d dev %s netns %d actor %s[%d] kernel=%v cause=%v\n", ev.Op, ev.Object, ev.Dst, ev.Table, ev.Dev.String(), ev.Netns,
			ev.Actor.Comm.String(), ev.Actor.Tgid, ev.Actor.Kernel, ev.Cause.Valid)
	}
	return b.String()
}

// One real containerd with two pods on ptp veths, for the tests below.
func startPods(t *testing.T) (*containerdtest.Runtime, *containerdtest.Pod, string) {
	rt := containerdtest.Start(t)
	pod := rt.RunPod(t, containerdtest.PodSpec{Name: "web-7d9f", Namespace: "shop",
		UID: "0b5e8f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b", Labels: map[string]string{"app": "web"}})
	id := rt.RunContainer(t, pod, "tool", "sleep", "3600")
	return rt, pod, id
}

// A process in a pod's container deletes a route in the pod's namespace:
// the actor is that pod and container, by name.
func TestPodActorNamed(t *testing.T) {
	rt, pod, id := startPods(t)
	s := startEnriched(t, Options{CRISocket: rt.Endpoint(), CNIConfDir: rt.CNIConfDir()})
	if out, err := rt.Exec(t, id, "ip", "route", "add", "198.51.100.0/24", "dev", "eth0"); err != nil {
		t.Fatalf("ip route add in the container: %v: %s", err, out)
	}
	if out, err := rt.Exec(t, id, "ip", "route", "del", "198.51.100.0/24", "dev", "eth0"); err != nil {
		t.Fatalf("ip route del in the container: %v: %s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	evs := s.stop()
	dels := findRoute(evs, netnsOf(t, pod.NetnsPath), event.OpDelete, netip.MustParsePrefix("198.51.100.0/24"))
	if len(dels) != 1 {
		t.Fatalf("%d deletes of 198.51.100.0/24, want 1:\n%s", len(dels), describeEvents(evs))
	}
	ev := dels[0]
	p := ev.Actor.Process
	if p == nil {
		t.Fatalf("delete not enriched: %+v", ev.Actor)
	}
	if p.ContainerID != id || p.PodUID != pod.UID || p.Runtime != "containerd" {
		t.Errorf("from the cgroup %q: container %q pod %q runtime %q; want %q %q containerd", p.Cgroup, p.ContainerID, p.PodUID, p.Runtime, id, pod.UID)
	}
	c := p.Container
	if c == nil || c.Pod == nil {
		t.Fatalf("container not named (enrich_error %q, cgroup %q)", p.EnrichError, p.Cgroup)
	}
	if c.ID != id || c.Name != "tool" || c.Image != containerdtest.BusyboxImage {
		t.Errorf("container = %+v, want %s tool %s", c, id, containerdtest.BusyboxImage)
	}
	if c.Pod.Name != "web-7d9f" || c.Pod.Namespace != "shop" || c.Pod.UID != pod.UID || c.Pod.Labels["app"] != "web" {
		t.Errorf("pod = %+v", c.Pod)
	}
	if want := []string{"ip", "route", "del", "198.51.100.0/24", "dev", "eth0"}; !slices.Equal(p.Cmdline, want) {
		t.Errorf("cmdline = %q, want %q", p.Cmdline, want)
	}
	if p.EnrichError != "" {
		t.Errorf("enrich_error = %q", p.EnrichError)
	}
	if ev.Victim.Link == nil || ev.Victim.Link.Name != "eth0" || ev.Victim.Link.Kind != "veth" {
		t.Errorf("victim link = %+v, want eth0 veth (in the pod's namespace)", ev.Victim.Link)
	}
}

// The host deletes a pod's /32 route: the victim is that pod, on a ptp
// veth.
func TestPodVictimNamed(t *testing.T) {
	rt, pod, _ := startPods(t)
	s := startEnriched(t, Options{CRISocket: rt.Endpoint(), CNIConfDir: rt.CNIConfDir()})
	host := netip.PrefixFrom(pod.IP, 32)
	if _, out, err := testnet.Run("ip", "route", "del", host.String(), "dev", pod.HostVeth); err != nil {
		t.Fatalf("ip route del %s: %v: %s", host, err, out)
	}
	time.Sleep(300 * time.Millisecond)
	evs := s.stop()
	dels := findRoute(evs, netnsOf(t, "/proc/self/ns/net"), event.OpDelete, host)
	if len(dels) != 1 {
		t.Fatalf("%d deletes of %s, want 1:\n%s", len(dels), host, describeEvents(evs))
	}
	v := dels[0].Victim
	if v.Pod == nil || v.Pod.Name != "web-7d9f" || v.Pod.Namespace != "shop" || v.Pod.UID != pod.UID {
		t.Errorf("victim pod = %+v", v.Pod)
	}
	if l := v.Link; l == nil || l.Name != pod.HostVeth || l.Kind != "veth" || l.CNI != "ptp" {
		t.Errorf("victim link = %+v, want %s veth ptp", l, pod.HostVeth)
	}
	if dels[0].Dev.String() != pod.HostVeth {
		t.Errorf("dev = %q, want %q", dels[0].Dev.String(), pod.HostVeth)
	}
	if p := dels[0].Actor.Process; p == nil || p.Cmdline[0] != "ip" || p.ContainerID != "" {
		t.Errorf("actor process = %+v, want ip outside any container", p)
	}
}

// Tearing the pod down removes its veth, and the kernel its route: the
// removal names the pod as victim and the link deletion as cause.
func TestPodTeardownVictim(t *testing.T) {
	rt, pod, _ := startPods(t)
	s := startEnriched(t, Options{CRISocket: rt.Endpoint(), CNIConfDir: rt.CNIConfDir()})
	rt.RemovePod(t, pod)
	time.Sleep(500 * time.Millisecond)
	evs := s.stop()
	host := netip.PrefixFrom(pod.IP, 32)
	dels := findRoute(evs, netnsOf(t, "/proc/self/ns/net"), event.OpDelete, host)
	if len(dels) != 1 {
		t.Fatalf("%d deletes of %s, want 1:\n%s", len(dels), host, describeEvents(evs))
	}
	ev := dels[0]
	if ev.Origin != event.OriginKernel || !ev.Cause.Valid || ev.Cause.Object != event.ObjectLink || ev.Cause.Op != event.OpDelete {
		t.Errorf("origin %s cause %+v, want the kernel, caused by a link deletion", ev.Origin, ev.Cause)
	}
	if v := ev.Victim; v.Pod == nil || v.Pod.UID != pod.UID || v.Pod.Name != "web-7d9f" {
		t.Errorf("victim pod = %+v", v.Pod)
	}
	if l := ev.Victim.Link; l == nil || l.Name != pod.HostVeth || l.CNI != "ptp" {
		t.Errorf("victim link = %+v, want %s (remembered after its deletion)", l, pod.HostVeth)
	}
}
