package metrics

import (
	"io"
	"log/slog"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// benchEvents is a route flush's mix: a unit's deletions, a command's adds,
// the kernel's removals and a failure, rotated so the benchmark looks up
// several keys rather than one hot one.
func benchEvents() []event.Event {
	evs := make([]event.Event, 4)
	unit := &event.Process{Unit: "systemd-networkd.service"}
	evs[0] = event.Event{Object: event.ObjectRoute, Op: event.OpDelete, Origin: event.OriginNetlink,
		Actor: event.Actor{Tgid: 10, Process: unit}}
	evs[1] = event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Origin: event.OriginNetlink, Actor: event.Actor{Tgid: 11}}
	evs[1].Actor.Comm.Set("bird")
	evs[2] = event.Event{Object: event.ObjectRoute, Op: event.OpDelete, Origin: event.OriginKernel, Actor: event.Actor{Kernel: true}}
	evs[3] = event.Event{Object: event.ObjectRule, Op: event.OpAdd, Origin: event.OriginNetlink, Errno: 17, Actor: event.Actor{Tgid: 12}}
	evs[3].Actor.Comm.Set("ip")
	return evs
}

func benchMetrics(b *testing.B) *Metrics {
	m, err := Start(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	return m
}

func BenchmarkChange(b *testing.B) {
	m := benchMetrics(b)
	evs := benchEvents()
	for i := range evs {
		m.Change(&evs[i]) // warm the caches: steady state is what counts
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Change(&evs[i&3])
	}
}

// BenchmarkChangeParallel shows the cost when several goroutines report
// at once (the cache's mutex and the SDK's own synchronisation).
func BenchmarkChangeParallel(b *testing.B) {
	m := benchMetrics(b)
	evs := benchEvents()
	for i := range evs {
		m.Change(&evs[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			m.Change(&evs[i&3])
		}
	})
}
