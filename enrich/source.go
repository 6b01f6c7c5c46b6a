// Package enrich names the actor and the victim of each change in the
// user's terms: the systemd unit, pod and container of the process, its
// command line; the kind and CNI of the route's interface and the pod
// behind the route. It sits between the tracer and the sinks, answers from
// caches on the event path, and resolves misses off it.
package enrich

import (
	"context"

	"github.com/routetrace/routetrace/event"
)

// Snapshot is every pod and container a source knows at one moment.
// Containers point at their pods in Pods.
type Snapshot struct {
	Pods       []*event.Pod
	Containers []*event.Container
}

// A Source lists the pods and containers on this node: the container
// runtime's CRI socket, or the Kubernetes API.
type Source interface {
	// Name is "cri" or "kubernetes", for logs and `routetrace probe`.
	Name() string
	// Describe says what the source is connected to, e.g.
	// "containerd 1.6.20 (CRI v1) at /run/containerd/containerd.sock".
	Describe(ctx context.Context) (string, error)
	// List returns what the source knows now. It is called off the event
	// path, with a deadline in ctx.
	List(ctx context.Context) (Snapshot, error)
	Close() error
}
