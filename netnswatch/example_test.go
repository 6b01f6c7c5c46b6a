package netnswatch_test

import (
	"context"
	"log/slog"
	"sync"

	"github.com/routetrace/routetrace/netnswatch"
	"github.com/routetrace/routetrace/rtnl"
)

// How tier 3 follows every namespace: a listener per namespace, opened
// through Path, closed when the namespace is gone; a change captured from
// a namespace not followed yet is a Hint, with the thread that made it.
func Example() {
	w, err := netnswatch.New(netnswatch.Options{Only: nil}) // Only: the --netns values
	if err != nil {
		slog.Error("following network namespaces", "err", err)
		return
	}
	defer w.Close()

	var mu sync.Mutex
	listeners := make(map[uint32]*rtnl.Listener)
	listen := func(ns netnswatch.Namespace) {
		path := ns.Path
		if ns.Inode == w.Self() {
			path = "" // our own: no need to enter it
		}
		l, err := rtnl.Listen(path, 0)
		if err != nil {
			slog.Warn("listening to rtnetlink notifications", "netns", ns.Inode, "origin", ns.Origin, "err", err)
			return
		}
		mu.Lock()
		listeners[ns.Inode] = l
		mu.Unlock()
		// ... read l in a goroutine of its own
	}
	forget := func(inode uint32) {
		mu.Lock()
		defer mu.Unlock()
		if l := listeners[inode]; l != nil {
			l.Close()
			delete(listeners, inode)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, listen, forget)

	// In the loop that reads captured requests, for each record:
	var tid, netns uint32 // the requester's thread id and the request's namespace
	if !w.Known(netns) {
		if ns, isNew := w.Hint(tid, netns); isNew {
			listen(ns)
		}
	}
}
