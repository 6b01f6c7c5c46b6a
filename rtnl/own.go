package rtnl

import "sync"

// The process's own request sockets, by namespace and portid: the tracer
// reports no change this process made (Options.TraceSelf aside), and while
// the BPF side drops our requests by tgid, the kernel's notifications of
// them still reach tier 3's listeners, naming only the socket's portid.
var own struct {
	mu    sync.RWMutex
	ports map[ownKey]struct{}
}

type ownKey struct{ netns, portid uint32 }

// MarkOwn records a socket of this process that sends change requests
// (repair's), so that tier 3 does not report their notifications; open
// false forgets it when the socket closes.
func MarkOwn(netns, portid uint32, open bool) {
	own.mu.Lock()
	defer own.mu.Unlock()
	if !open {
		delete(own.ports, ownKey{netns, portid})
		return
	}
	if own.ports == nil {
		own.ports = make(map[ownKey]struct{})
	}
	own.ports[ownKey{netns, portid}] = struct{}{}
}

// Own reports whether portid in netns is a request socket of this process
// (MarkOwn).
func Own(netns, portid uint32) bool {
	own.mu.RLock()
	defer own.mu.RUnlock()
	_, ok := own.ports[ownKey{netns, portid}]
	return ok
}
