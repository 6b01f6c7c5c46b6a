package repair_test

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/policy"
	"github.com/routetrace/routetrace/repair"
	"github.com/routetrace/routetrace/tracer"
)

// How enforce --mode repair wires it: the snapshot first (what exists
// before tracing starts can be put back), a tracer with LowLatency, and
// for each change the policy objects to, Deleted before the journal.
func Example() {
	var pol atomic.Pointer[policy.Policy]
	p, err := policy.Load("policy.yaml")
	if err != nil {
		slog.Error("loading the policy", "err", err)
		return
	}
	pol.Store(p)

	r, err := repair.New(repair.Options{
		// enforce's scope: --netns's, else routetrace's own; nil would
		// follow every namespace on the node.
		Netns: []string{"/proc/self/ns/net"},
		// What to snapshot: the protect entries, asked of each object.
		Keep: func(ev *event.Event) bool { return pol.Load().Protects(ev) != nil },
	})
	if err != nil {
		slog.Error("snapshotting protected state", "err", err)
		return
	}
	defer r.Close()
	// On a policy reload: pol.Store(newPolicy); r.Resync()

	tr, err := tracer.New(tracer.Options{LowLatency: true})
	if err != nil {
		slog.Error("starting the tracer", "err", err)
		return
	}
	defer tr.Close()
	tr.Run(context.Background(), func(ev *event.Event) {
		if pol.Load().Apply(ev, event.VerdictWouldBlock).Enforced() {
			r.Deleted(ev) // VerdictRepaired and Missing, or a Reason
		}
		// ... journal and sinks
	})
}
