package enrich

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/routetrace/routetrace/event"
)

// SyntheticPods is a source of n generated pods with three containers
// each, labels and one IPv4 address (10.128.0.0/9 upwards): for measuring
// memory and lookups with a full cache (bench --synthetic-pods). It is not
// a test double of a real source: those are tested against containerd.
func SyntheticPods(n int) Source { return &synthetic{snap: generate(n)} }

type synthetic struct{ snap Snapshot }

func (s *synthetic) Name() string { return "synthetic" }
func (s *synthetic) Describe(context.Context) (string, error) {
	return fmt.Sprintf("%d generated pods", len(s.snap.Pods)), nil
}
func (s *synthetic) List(context.Context) (Snapshot, error) { return s.snap, nil }
func (s *synthetic) Close() error                           { return nil }

func generate(n int) Snapshot {
	var snap Snapshot
	for i := 0; i < n; i++ {
		a := uint32(10<<24|128<<16) + uint32(i)
		pod := &event.Pod{
			Name:      fmt.Sprintf("app-%d-7d9f8b6c5d-x%04d", i/10, i%10000),
			Namespace: fmt.Sprintf("team-%d", i%50),
			UID:       fmt.Sprintf("%08x-1c2d-4e5f-8a9b-%012x", i, i),
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", i/10), "pod-template-hash": "7d9f8b6c5d",
				"app.kubernetes.io/part-of": "synthetic"},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})},
		}
		snap.Pods = append(snap.Pods, pod)
		for c := 0; c < 3; c++ {
			snap.Containers = append(snap.Containers, &event.Container{
				ID:   fmt.Sprintf("%056x%08x", i, c),
				Name: fmt.Sprintf("container-%d", c), Image: "registry.example/app:v1.2.3", Pod: pod,
			})
		}
	}
	return snap
}
