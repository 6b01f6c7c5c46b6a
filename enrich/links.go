package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/netnswatch"
	"github.com/routetrace/routetrace/rtnl"
)

// DefaultLinkGrace is how long a deleted link, and a namespace gone, stay
// answerable: the routes the kernel flushes with a link arrive after its
// RTM_DELLINK may have been read.
const DefaultLinkGrace = 30 * time.Second

// DefaultLinkRcvBuf is the receive buffer of each namespace's link socket.
const DefaultLinkRcvBuf = 1 << 20

// LinksOptions configure a Links cache.
type LinksOptions struct {
	// Netns narrows the namespaces followed to these (names in /run/netns
	// or paths), as --netns does; empty means every namespace on the node.
	Netns []string
	// CNI is the configured CNI (ConfiguredCNI), which claims the link
	// names CNIs share (ClassifyLinkFor).
	CNI string
	// Logger receives overruns and failures; nil means slog.Default().
	Logger *slog.Logger
	// Grace is how long deleted links and gone namespaces stay; 0 means
	// DefaultLinkGrace.
	Grace time.Duration
	// Interval is how often namespaces are looked for (netnswatch); 0
	// means netnswatch.DefaultInterval.
	Interval time.Duration
	// RcvBuf is each link socket's receive buffer; 0 means
	// DefaultLinkRcvBuf.
	RcvBuf int
}

// Links knows every link of every network namespace on the node (or those
// LinksOptions.Netns names), kept current from each namespace's link
// notifications: a NETLINK_ROUTE socket per namespace joined to
// RTNLGRP_LINK, read as soon as anything arrives, and a dump of the links
// when the socket is opened and after every overrun.
//
// Lookup answers from immutable snapshots: one atomic load per level, no
// lock, no allocation.
type Links struct {
	log      *slog.Logger
	cni      string
	grace    time.Duration
	rcvbuf   int
	w        *netnswatch.Watcher
	overruns atomic.Uint64

	// namespaces is replaced whole (copy on write) under nsMu.
	namespaces atomic.Pointer[map[uint32]*nsLinks]
	nsMu       sync.Mutex
	stopped    bool // nsMu: Run returned; follow opens nothing more

	readers sync.WaitGroup
}

// nsLinks is one namespace's links.
type nsLinks struct {
	inode  uint32
	origin string
	snap   atomic.Pointer[map[uint32]*event.Link]

	mu     sync.Mutex // the fields below
	state  map[uint32]*linkState
	file   *os.File // the socket; nil once closed
	goneAt time.Time
}

// linkState is what the notifications said last of one link.
type linkState struct {
	name, kind string
	master     uint32
	deletedAt  time.Time // zero while the link exists
	seen       uint64    // the dump generation that last saw it
	link       *event.Link
}

// NewLinks checks the options and opens /proc and the mount table to
// follow namespaces; Run does the work.
func NewLinks(opts LinksOptions) (*Links, error) {
	l := &Links{log: opts.Logger, cni: opts.CNI, grace: opts.Grace, rcvbuf: opts.RcvBuf}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.grace <= 0 {
		l.grace = DefaultLinkGrace
	}
	if l.rcvbuf <= 0 {
		l.rcvbuf = DefaultLinkRcvBuf
	}
	w, err := netnswatch.New(netnswatch.Options{Interval: opts.Interval, Only: opts.Netns, Logger: l.log})
	if err != nil {
		return nil, fmt.Errorf("following network namespaces for their links: %w", err)
	}
	l.w = w
	empty := map[uint32]*nsLinks{}
	l.namespaces.Store(&empty)
	return l, nil
}

// Lookup returns the link ifindex of the namespace whose inode is netns,
// nil when unknown. The value is shared and never changes: a link that
// changes gets a new one. A deleted link, or a link of a namespace gone,
// is still returned for LinksOptions.Grace. Safe from any goroutine; no
// lock, no allocation.
func (l *Links) Lookup(netns, ifindex uint32) *event.Link {
	ns := (*l.namespaces.Load())[netns]
	if ns == nil {
		return nil
	}
	m := ns.snap.Load()
	if m == nil {
		return nil
	}
	return (*m)[ifindex]
}

// Overruns is the number of times a namespace's link socket overflowed
// (ENOBUFS, or a datagram too long for the buffer); each was followed by
// a fresh dump of that namespace's links.
func (l *Links) Overruns() uint64 { return l.overruns.Load() }

// Hint follows at once the namespace netns, which thread pid made a
// change in, if it is not followed yet (netnswatch.Watcher.Hint): a
// short-lived process's namespace is then read before it is gone.
func (l *Links) Hint(pid, netns uint32) {
	if ns, isNew := l.w.Hint(pid, netns); isNew {
		l.follow(ns)
	}
}

// Run follows namespaces and reads their links until ctx ends, then
// closes every socket and waits for the readers. Lookup keeps answering
// from the last snapshots after Run returns. Call it once.
func (l *Links) Run(ctx context.Context) {
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		tick := time.NewTicker(max(l.grace/8, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				l.sweep(now)
			}
		}
	}()
	l.w.Run(ctx, l.follow, l.forget)

	l.nsMu.Lock()
	l.stopped = true
	for _, ns := range *l.namespaces.Load() {
		ns.close()
	}
	l.nsMu.Unlock()
	l.readers.Wait()
	<-sweepDone
	l.w.Close()
}

// follow opens a link socket in a namespace that appeared and starts its
// reader.
func (l *Links) follow(n netnswatch.Namespace) {
	path := n.Path
	if n.Inode == l.w.Self() {
		path = "" // our own: no need to enter it
	}
	f, portid, err := l.open(path)
	if err != nil {
		l.log.Warn("listening to link notifications", "netns", n.Inode, "origin", n.Origin, "err", err)
		return
	}
	ns := &nsLinks{inode: n.Inode, origin: n.Origin, state: make(map[uint32]*linkState), file: f}
	l.nsMu.Lock()
	defer l.nsMu.Unlock()
	if l.stopped {
		f.Close()
		return
	}
	old := *l.namespaces.Load()
	if prev := old[n.Inode]; prev != nil {
		prev.close() // an inode reused after its namespace went
	}
	next := make(map[uint32]*nsLinks, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[n.Inode] = ns
	l.namespaces.Store(&next)
	l.readers.Add(1)
	go func() {
		defer l.readers.Done()
		l.read(ns, f, portid)
	}()
}

// forget closes the socket of a namespace that is gone; its links stay
// for the grace period.
func (l *Links) forget(inode uint32) {
	l.nsMu.Lock()
	ns := (*l.namespaces.Load())[inode]
	l.nsMu.Unlock()
	if ns == nil {
		return
	}
	ns.mu.Lock()
	ns.goneAt = time.Now()
	ns.mu.Unlock()
	ns.close()
}

func (ns *nsLinks) close() {
	ns.mu.Lock()
	f := ns.file
	ns.file = nil
	ns.mu.Unlock()
	if f != nil {
		f.Close() // wakes the reader
	}
}

// open creates a NETLINK_ROUTE socket in the namespace at path, bound to
// RTNLGRP_LINK only, handed to the runtime's poller (link notifications
// are few: no reason to avoid the wakeups rtnl.ListenPolled avoids).
func (l *Links) open(path string) (*os.File, uint32, error) {
	fd, err := rtnl.SocketIn(path)
	if err != nil {
		return nil, 0, err
	}
	const rtnlgrpLink = 1
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (rtnlgrpLink - 1)}); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("binding a link notification socket: %w", err)
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, l.rcvbuf)
	if errors.Is(err, unix.EPERM) {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, l.rcvbuf)
	}
	if err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("setting a link socket's receive buffer to %d: %w", l.rcvbuf, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("getsockname of a link socket: %w", err)
	}
	nl, _ := sa.(*unix.SockaddrNetlink)
	if nl == nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("link socket has a %T address", sa)
	}
	return os.NewFile(uintptr(fd), "rtnetlink-links"), nl.Pid, nil
}

// netlink message types and flags the reader handles itself.
const (
	nlmsgError   = 2
	nlmsgDone    = 3
	nlmFDumpIntr = 0x10
)

// read receives one namespace's link notifications and dumps until its
// socket is closed.
func (l *Links) read(ns *nsLinks, f *os.File, portid uint32) {
	rc, err := f.SyscallConn()
	if err != nil {
		l.log.Warn("reading link notifications", "netns", ns.inode, "err", err)
		return
	}
	var (
		buf      = make([]byte, 64<<10)
		seq      uint32
		gen      uint64 // dump generation: links a complete dump did not see are gone
		dumping  bool
		redo     = true // a dump is needed: at the start and after an overrun
		damaged  bool   // the dump in progress lost messages: do not judge by it
		failures int
	)
	for {
		if redo && !dumping {
			seq++
			gen++
			var serr error
			if err := rc.Write(func(fd uintptr) bool {
				serr = unix.Sendto(int(fd), rtnl.LinkDumpRequest(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
				return !errors.Is(serr, unix.EAGAIN)
			}); err != nil {
				return // closed
			}
			if serr != nil {
				l.log.Warn("requesting a link dump", "netns", ns.inode, "err", serr)
				return
			}
			redo, dumping, damaged = false, true, false
		}
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
			return !errors.Is(rerr, unix.EAGAIN) && !errors.Is(rerr, unix.EINTR)
		}); err != nil {
			return // closed
		}
		if errors.Is(rerr, unix.ENOBUFS) || (rerr == nil && n > len(buf)) {
			// Notifications were lost: what the cache holds may be stale.
			c := l.overruns.Add(1)
			l.log.Warn("link notifications lost (socket overrun): dumping the links again", "netns", ns.inode, "origin", ns.origin, "overruns", c)
			redo = true
			damaged = damaged || dumping
			continue
		}
		if rerr != nil {
			// Unexpected; the next Read waits for the socket again, so
			// this cannot spin unless the socket keeps failing.
			failures++
			l.log.Warn("receiving link notifications", "netns", ns.inode, "err", rerr, "failures", failures)
			if failures > 100 {
				return
			}
			continue
		}
		now := time.Now()
		ns.mu.Lock()
		changed := false
		for rest := buf[:n]; len(rest) > 0; {
			h, msg, next, err := rtnl.Next(rest)
			if err != nil {
				l.log.Debug("malformed link notification datagram", "netns", ns.inode, "err", err)
				break
			}
			rest = next
			ours := dumping && h.Seq == seq && h.Portid == portid
			if ours && h.Flags&nlmFDumpIntr != 0 {
				damaged = true // the links changed during the dump
			}
			switch h.Type {
			case nlmsgDone:
				if !ours {
					continue
				}
				dumping = false
				if damaged {
					redo = true
					continue
				}
				for _, st := range ns.state {
					if st.deletedAt.IsZero() && st.seen < gen {
						st.deletedAt = now
						changed = true
					}
				}
				continue
			case nlmsgError:
				if !ours {
					continue
				}
				errno, _ := rtnl.ErrorCode(h, msg)
				dumping = false
				l.log.Warn("link dump refused", "netns", ns.inode, "errno", errno)
				redo = errno == -int32(unix.EBUSY) || errno == -int32(unix.EINTR)
				continue
			}
			m, err := rtnl.ParseLink(h, msg)
			if err != nil {
				if !errors.Is(err, rtnl.ErrUnknownType) {
					l.log.Debug("malformed link notification", "netns", ns.inode, "err", err)
				}
				continue
			}
			if m.BridgePort() {
				continue
			}
			changed = ns.apply(&m, gen, now) || changed
		}
		if changed {
			ns.publish(l.cni)
		}
		ns.mu.Unlock()
	}
}

// apply records one link message; ns.mu held. It reports whether the
// cache changed.
func (ns *nsLinks) apply(m *rtnl.LinkMsg, gen uint64, now time.Time) bool {
	st := ns.state[m.Index]
	if m.Deleted {
		if st != nil && !st.deletedAt.IsZero() {
			return false
		}
		if st == nil {
			// Deleted before we knew it: its last description is in the
			// message, and a route flushed with it may still be enriched.
			st = &linkState{name: string(m.Name), kind: string(m.Kind), master: m.Master}
			ns.state[m.Index] = st
		}
		st.deletedAt = now
		return true
	}
	if st == nil || !st.deletedAt.IsZero() {
		st = &linkState{}
		ns.state[m.Index] = st
	}
	st.seen = gen
	changed := st.link == nil || st.master != m.Master
	if string(m.Name) != st.name {
		st.name, changed = string(m.Name), true
	}
	if string(m.Kind) != st.kind {
		st.kind, changed = string(m.Kind), true
	}
	st.master = m.Master
	return changed
}

// publish replaces the namespace's snapshot, reusing every value that did
// not change; ns.mu held.
func (ns *nsLinks) publish(cni string) {
	m := make(map[uint32]*event.Link, len(ns.state))
	for idx, st := range ns.state {
		master := ""
		if st.master != 0 {
			if ms := ns.state[st.master]; ms != nil {
				master = ms.name
			}
		}
		c := ClassifyLinkFor(cni, st.name, st.kind)
		if p := st.link; p == nil || p.Name != st.name || p.Kind != st.kind || p.Master != master || p.CNI != c {
			st.link = &event.Link{Name: st.name, Kind: st.kind, Master: master, CNI: c}
		}
		m[idx] = st.link
	}
	ns.snap.Store(&m)
}

// sweep drops the links deleted, and the namespaces gone, longer than the
// grace period ago.
func (l *Links) sweep(now time.Time) {
	var gone []uint32
	for inode, ns := range *l.namespaces.Load() {
		ns.mu.Lock()
		if !ns.goneAt.IsZero() && now.Sub(ns.goneAt) >= l.grace {
			gone = append(gone, inode)
		}
		changed := false
		for idx, st := range ns.state {
			if !st.deletedAt.IsZero() && now.Sub(st.deletedAt) >= l.grace {
				delete(ns.state, idx)
				changed = true
			}
		}
		if changed {
			ns.publish(l.cni)
		}
		ns.mu.Unlock()
	}
	if len(gone) == 0 {
		return
	}
	l.nsMu.Lock()
	defer l.nsMu.Unlock()
	old := *l.namespaces.Load()
	next := make(map[uint32]*nsLinks, len(old))
	for k, v := range old {
		next[k] = v
	}
	for _, inode := range gone {
		// Only the entry judged gone: a namespace followed again under
		// the same inode meanwhile is another entry.
		if ns := next[inode]; ns != nil {
			ns.mu.Lock()
			expired := !ns.goneAt.IsZero() && now.Sub(ns.goneAt) >= l.grace
			ns.mu.Unlock()
			if expired {
				delete(next, inode)
				l.log.Debug("forgetting the links of a network namespace gone", "netns", inode, "origin", ns.origin)
			}
		}
	}
	l.namespaces.Store(&next)
}

// followed reports whether the namespace is still answered for, for tests.
func (l *Links) followed(netns uint32) bool {
	return (*l.namespaces.Load())[netns] != nil
}

// deleted reports whether the cache holds the link as deleted (a
// tombstone), for tests.
func (l *Links) deleted(netns, ifindex uint32) bool {
	ns := (*l.namespaces.Load())[netns]
	if ns == nil {
		return false
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st := ns.state[ifindex]
	return st != nil && !st.deletedAt.IsZero()
}
