// Package routestate keeps a snapshot of the routes, rules and nexthop
// objects of followed network namespaces, current from the kernel's
// rtnetlink notifications, so that one removed can be put back exactly as
// it was (repair mode of enforce).
//
// Each object is kept as the kernel's own last description of it: the raw
// RTM_NEWROUTE, RTM_NEWRULE or RTM_NEWNEXTHOP message of the last dump or
// notification. Re-sending that message as a request re-creates every
// attribute, the ones routetrace decodes and the ones it does not (encap,
// metrics, multipath weights, flags), with no translation to get wrong.
package routestate

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/rtnl"
)

// Key identifies an object the way the kernel does when it looks one up to
// delete it or to refuse a duplicate: a route by {family, table, dst, src,
// tos, metric}, a rule by its selectors, priority and action, a nexthop by
// id. Fields an object kind does not use are zero.
type Key struct {
	Netns    uint32
	Object   event.Object
	Family   uint8
	TOS      uint8
	Action   uint8
	Table    uint32
	Priority uint32
	ID       uint32 // nexthop id
	Dst, Src netip.Prefix
	// Rules.
	IifName, OifName     event.Name
	FwMark, FwMask, Goto uint32
}

// KeyOf is the key of the object an event (or a decoded message) is about.
func KeyOf(ev *event.Event) Key {
	k := Key{Netns: ev.Netns, Object: ev.Object, Family: ev.Family}
	switch ev.Object {
	case event.ObjectRoute:
		k.Table, k.Priority, k.TOS, k.Dst, k.Src = ev.Table, ev.Priority, ev.TOS, ev.Dst, ev.Src
	case event.ObjectRule:
		k.Table, k.Priority, k.TOS, k.Dst, k.Src = ev.Table, ev.Priority, ev.TOS, ev.Dst, ev.Src
		k.Action, k.IifName, k.OifName, k.FwMark, k.FwMask, k.Goto = ev.Action, ev.IifName, ev.OifName, ev.FwMark, ev.FwMask, ev.Goto
	case event.ObjectNexthop:
		k.Family = 0 // an id names one nexthop whatever its family
		k.ID = ev.NexthopID
	}
	return k
}

// Options configure a Store.
type Options struct {
	// Keep says which objects to keep, asked with the object as decoded
	// from the kernel's message (Op add, Netns set, Dev named): the
	// policy's protect entries. nil keeps everything.
	Keep func(ev *event.Event) bool
	// Graveyard is how long a deleted object is kept, so that the event of
	// its deletion, which may come after the store saw it, still finds it
	// (default 30 s).
	Graveyard time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// Errors of Reinstall, for errors.Is.
var (
	ErrNoSnapshot  = errors.New("no snapshot")
	ErrNotFollowed = errors.New("network namespace not followed")
)

// Store is the snapshot of the followed namespaces. Its methods are safe
// for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	byNs map[uint32]*netnsState
}

// New returns a store following no namespace yet: call Follow.
func New(opts Options) *Store {
	if opts.Graveyard <= 0 {
		opts.Graveyard = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Store{opts: opts, log: log, byNs: make(map[uint32]*netnsState)}
}

// entry is one object: its kernel message and whether it is there now.
type entry struct {
	msg   []byte // RTM_NEW*, header included, exactly as the kernel sent it
	gone  int64  // when its deletion was seen (Unix ns); 0 while present
	epoch uint32 // the dump (or later notification) that last saw it
	nhid  uint32 // a route's nexthop object, which takes it along when deleted
	// byKernel: its deletion named no requester (portid 0): the kernel's
	// own, e.g. with its nexthop.
	byKernel bool
}

type grave struct {
	key Key
	at  int64
}

// netnsState is one followed namespace; its maps are guarded by Store.mu.
type netnsState struct {
	ino  uint32
	path string // to open the subscription again after an overrun
	// subMu guards sub, which the reader replaces after an overrun while
	// close may be closing it.
	subMu  sync.Mutex
	sub    *os.File
	closed bool
	resync bool // Resync closed sub: subscribe and dump again
	objs   map[Key]*entry
	graves []grave // deleted keys, oldest first
	links  map[uint32]event.Name
	epoch  uint32
	ready  chan struct{} // closed after the first full dump
	done   chan struct{} // closed when the reader returns

	reqMu sync.Mutex // one request in flight on req
	req   int        // request socket (-1 once closed)
	seq   uint32
}

// Follow starts keeping the namespace at path ("" for our own) and returns
// its inode once its first dump is in. Following one twice is a no-op.
func (s *Store) Follow(path string) (uint32, error) {
	ino, err := rtnl.NetnsInode(path)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	if ns := s.byNs[ino]; ns != nil {
		s.mu.Unlock()
		<-ns.ready
		return ino, nil
	}
	ns := &netnsState{path: path, ino: ino, objs: make(map[Key]*entry), links: make(map[uint32]event.Name),
		ready: make(chan struct{}), done: make(chan struct{}), req: -1}
	s.byNs[ino] = ns
	s.mu.Unlock()

	// The request socket is opened now, not at the first repair: path may
	// be a descriptor a namespace watcher holds (/proc/self/fd/N) only for
	// a while, and entering a namespace costs a repair time it lacks.
	if ns.sub, err = subscribe(path); err == nil {
		if ns.req, err = requestSocket(path, ino); err != nil {
			ns.sub.Close()
		}
	}
	if err != nil {
		s.mu.Lock()
		delete(s.byNs, ino)
		s.mu.Unlock()
		return 0, fmt.Errorf("following netns %s: %w", label(path), err)
	}
	go s.read(ns)
	select {
	case <-ns.ready:
	case <-ns.done:
		s.Unfollow(ino)
		return 0, fmt.Errorf("following netns %s: the first dump failed", label(path))
	}
	return ino, nil
}

// Unfollow stops keeping a namespace (one that went away).
func (s *Store) Unfollow(ino uint32) {
	s.mu.Lock()
	ns := s.byNs[ino]
	delete(s.byNs, ino)
	s.mu.Unlock()
	if ns != nil {
		ns.close()
	}
}

// Resync dumps every namespace again, in the background, for a Keep that
// changed (a policy reloaded): objects it now keeps are snapshotted, those
// it no longer keeps forgotten.
func (s *Store) Resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ns := range s.byNs {
		ns.subMu.Lock()
		if !ns.closed {
			// The reader, woken by the close, sees why.
			ns.resync = true
			ns.sub.Close()
		}
		ns.subMu.Unlock()
	}
}

// Close stops following every namespace.
func (s *Store) Close() {
	s.mu.Lock()
	all := s.byNs
	s.byNs = make(map[uint32]*netnsState)
	s.mu.Unlock()
	for _, ns := range all {
		ns.close()
	}
}

func (ns *netnsState) close() {
	ns.subMu.Lock()
	ns.closed = true
	ns.sub.Close()
	ns.subMu.Unlock()
	<-ns.done
	ns.reqMu.Lock()
	defer ns.reqMu.Unlock()
	if ns.req >= 0 {
		if portid, err := rtnl.PortidOf(ns.req); err == nil {
			rtnl.MarkOwn(ns.ino, portid, false)
		}
		unix.Close(ns.req)
		ns.req = -1
	}
}

// Len is the number of objects kept in a namespace (deleted ones still in
// the graveyard included).
func (s *Store) Len(netns uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.byNs[netns]; ns != nil {
		return len(ns.objs)
	}
	return 0
}

// State is what the store knows of one object.
type State uint8

const (
	Unknown State = iota // never seen, not kept, or deleted long ago
	Present
	Deleted // its deletion was seen (within the graveyard time)
)

// Lookup reports what the store knows of an object.
func (s *Store) Lookup(k Key) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNs[k.Netns]
	if ns == nil {
		return Unknown
	}
	e := ns.objs[k]
	switch {
	case e == nil:
		return Unknown
	case e.gone != 0:
		return Deleted
	}
	return Present
}

// Find returns the key of the object k names: k itself when kept, else
// the one object k's non-zero fields select. Tiers 1-2 describe a rule's
// deletion by the request's selectors ("ip rule del pref 100" names only
// the priority), not by the rule the kernel removed. Among several
// matches, the one deleted last wins: the deletion the event reports was
// already seen, or is the only one that can still come (one present).
func (s *Store) Find(k Key) (Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNs[k.Netns]
	if ns == nil {
		return k, false
	}
	if _, ok := ns.objs[k]; ok {
		return k, true
	}
	var best Key
	var bestGone int64
	present := 0
	for c, e := range ns.objs {
		if !selects(&k, &c) {
			continue
		}
		if e.gone == 0 {
			present++
			if bestGone == 0 {
				best = c
			}
		} else if e.gone > bestGone {
			best, bestGone = c, e.gone
		}
	}
	if bestGone != 0 || present == 1 {
		return best, true
	}
	return k, false // none, or several present: no guess
}

// selects reports whether every non-zero field of sel equals c's.
func selects(sel, c *Key) bool {
	if sel.Object != c.Object || sel.Netns != c.Netns || sel.Family != 0 && sel.Family != c.Family {
		return false
	}
	u32 := func(a, b uint32) bool { return a == 0 || a == b }
	u8 := func(a, b uint8) bool { return a == 0 || a == b }
	pfx := func(a, b netip.Prefix) bool { return !a.IsValid() || a == b }
	name := func(a, b event.Name) bool { return a[0] == 0 || a == b }
	return u8(sel.TOS, c.TOS) && u8(sel.Action, c.Action) && u32(sel.Table, c.Table) && u32(sel.Priority, c.Priority) &&
		u32(sel.ID, c.ID) && pfx(sel.Dst, c.Dst) && pfx(sel.Src, c.Src) && name(sel.IifName, c.IifName) &&
		name(sel.OifName, c.OifName) && u32(sel.FwMark, c.FwMark) && u32(sel.FwMask, c.FwMask) && u32(sel.Goto, c.Goto)
}

// keys lists the routes in a namespace of a family (0: both) through
// nexthop object nhid (0: any): those present, and those the kernel
// deleted by itself since (Unix ns; 0: none).
func (s *Store) keys(netns uint32, family uint8, nhid uint32, since int64) []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNs[netns]
	if ns == nil {
		return nil
	}
	var keys []Key
	for k, e := range ns.objs {
		if (e.gone == 0 || since != 0 && e.byKernel && e.gone >= since) && k.Object == event.ObjectRoute &&
			(family == 0 || k.Family == family) && (nhid == 0 || e.nhid == nhid) {
			keys = append(keys, k)
		}
	}
	return keys
}

// NexthopOf is the nexthop object a route goes through, 0 for none.
func (s *Store) NexthopOf(k Key) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.byNs[k.Netns]; ns != nil {
		if e := ns.objs[k]; e != nil {
			return e.nhid
		}
	}
	return 0
}

// GoneAt is when the store saw an object's deletion (Unix ns), 0 while it
// is present or unknown.
func (s *Store) GoneAt(k Key) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.byNs[k.Netns]; ns != nil {
		if e := ns.objs[k]; e != nil {
			return e.gone
		}
	}
	return 0
}

// message returns a copy of an object's last kernel message.
func (s *Store) message(k Key) (*netnsState, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNs[k.Netns]
	if ns == nil {
		return nil, nil, ErrNotFollowed
	}
	e := ns.objs[k]
	if e == nil {
		return ns, nil, ErrNoSnapshot
	}
	return ns, append([]byte(nil), e.msg...), nil
}

func label(path string) string {
	if path == "" {
		return "self"
	}
	return path
}
