package main

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/policy"
	"github.com/routetrace/routetrace/repair"
)

// setupRepair snapshots the protected state of the enforced namespaces
// before the tracer starts (what exists now can be put back), and makes
// the judge put back each protected deletion by an actor not allowed.
func setupRepair(c *cli.Context, j *judgeStage) error {
	// The snapshot's idea of "protected" follows reloads on its own
	// pointer: reloaded runs before the judge's policy is swapped.
	var keep atomic.Pointer[policy.Policy]
	keep.Store(j.policy.Load())
	r, err := repair.New(repair.Options{
		Netns:  j.nsPaths,
		Keep:   func(ev *event.Event) bool { return keep.Load().Protects(ev) != nil },
		Logger: slog.Default(),
	})
	if err != nil {
		return fmt.Errorf("snapshotting the protected routes, rules and nexthops for repair: %w", err)
	}
	j.repair = r.Deleted
	j.reloaded = func(p *policy.Policy) error {
		keep.Store(p)
		r.Resync()
		return nil
	}
	// A deletion is put back the moment its event is read, not a poll
	// period later: the tracer reads its ring at once after one.
	j.lowLatency = true
	j.closers = append(j.closers, r.Close)
	return nil
}
