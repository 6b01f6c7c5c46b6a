package tier3

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/rtnl"
)

// Polling: the notification sockets are read without being woken (a wakeup
// per notification costs the changing task several microseconds inside its
// syscall), fast while notifications flow and slowly when idle, so that an
// idle tracer costs next to nothing.
const (
	BusyPoll = 5 * time.Millisecond
	IdlePoll = 500 * time.Millisecond
	// IdleAfter is how long without anything read before polling slows.
	IdleAfter = time.Second
	// rcvbuf holds a burst of notifications between two polls.
	rcvbuf = 64 << 20
	// primeDumpSeq is the seq of the dump a listener asks for when it
	// opens: the first cut of the namespace's IPv4 routes.
	primeDumpSeq = 1
)

// A Note is one message read from a notification socket, or news about a
// listener, in the order the joiner must see them.
type Note struct {
	Ev       event.Event
	Kind     NoteKind
	LinkDown bool   // an RTM_NEWLINK that takes the link down
	Hash     uint32 // OriginHash of a change with no requester (portid 0)
}

// NoteKind says what a Note carries.
type NoteKind uint8

const (
	NoteChange     NoteKind = iota // a notification, decoded into Ev
	NoteDumpEnd                    // NLMSG_DONE of a dump: Ev has Netns, Portid, Seq
	NoteDumpFailed                 // NLMSG_ERROR answering a dump request
	NoteOverrun                    // the kernel dropped notifications: Ev has Netns
	NoteListening                  // a listener opened or reopened: Ev has Netns, Portid, Seq of its first dump (0: none)
	NoteGone                       // a namespace is no longer listened to: Ev has Netns
	NoteSynced                     // every socket was read to empty after Sync was called
)

// Listeners holds one rtnetlink notification socket per traced namespace
// and reads them all from one goroutine.
type Listeners struct {
	log        *slog.Logger
	stats      *Stats
	dumpRoutes bool // ask each new listener for its namespace's IPv4 routes

	mu     sync.Mutex
	byNs   map[uint32]*listener
	queued []Note // news for Run to send, in order
	wake   chan struct{}
	// stopping: Run drains every socket once more and returns.
	stopping atomic.Bool
	// syncWanted: Run sends NoteSynced after its next full pass.
	syncWanted atomic.Bool
	// onSocket is told of each listener socket as it opens and closes.
	onSocket func(netns, portid uint32, open bool)
	// wakeFd is the eventfd poke writes to when Run waits in poll(2)
	// (WakeOnNotification); -1 when Run sleeps between reads.
	wakeFd atomic.Int32
	pfds   []unix.PollFd
}

type listener struct {
	l      *rtnl.Listener
	path   string
	portid uint32
}

// OnSocket has f told, under the listeners' lock, of every listener socket
// as it opens (before its first notification is read) and as it closes:
// the BPF side that names ioctls knows our sockets by netns and portid.
func (ls *Listeners) OnSocket(f func(netns, portid uint32, open bool)) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.onSocket = f
	for ino, l := range ls.byNs {
		f(ino, l.portid, true)
	}
}

// closeLocked closes a listener; ls.mu is held.
func (ls *Listeners) closeLocked(ino uint32, l *listener) {
	l.l.Close()
	if ls.onSocket != nil {
		ls.onSocket(ino, l.portid, false)
	}
}

// NewListeners returns an empty set. With dumpRoutes each listener asks
// for its namespace's IPv4 routes when it opens (tier 3 keeps them to see
// the kernel's silent flushes).
func NewListeners(log *slog.Logger, stats *Stats, dumpRoutes bool) *Listeners {
	ls := &Listeners{log: log, stats: stats, dumpRoutes: dumpRoutes, byNs: make(map[uint32]*listener), wake: make(chan struct{}, 1)}
	ls.wakeFd.Store(-1)
	return ls
}

// WakeOnNotification makes Run wait for the sockets in poll(2) instead of
// sleeping between reads, so that a notification is read within
// microseconds rather than after up to IdlePoll: for repair mode, where
// the time a protected route is missing counts. The price is the wakeup
// per notification that polling avoids (see ListenPolled). Call before Run.
func (ls *Listeners) WakeOnNotification() error {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("creating the listeners' eventfd: %w", err)
	}
	ls.wakeFd.Store(int32(fd))
	return nil
}

// Add opens a listener in the namespace at path ("" for our own) unless
// one is open there already, and returns the namespace's inode.
func (ls *Listeners) Add(path string) (uint32, error) {
	ino, err := rtnl.NetnsInode(path)
	if err != nil {
		return 0, err
	}
	ls.mu.Lock()
	_, ok := ls.byNs[ino]
	ls.mu.Unlock()
	if ok {
		return ino, nil
	}
	l, err := rtnl.ListenPolled(path, rcvbuf)
	if err != nil {
		return 0, fmt.Errorf("listening to rtnetlink notifications in netns %s: %w", label(path), err)
	}
	if err := ls.open(ino, path, l); err != nil {
		l.Close()
		return 0, err
	}
	return ino, nil
}

// open records l as the listener of ino and asks for its first dump.
func (ls *Listeners) open(ino uint32, path string, l *rtnl.Listener) error {
	portid, err := l.Portid()
	if err != nil {
		return fmt.Errorf("reading the listener's portid in netns %s: %w", label(path), err)
	}
	n := Note{Ev: event.Event{Netns: ino, Portid: portid}, Kind: NoteListening}
	if ls.dumpRoutes {
		// Asked now, so that a flush right after is measured against it.
		if err := l.RequestRouteDump(event.FamilyInet, primeDumpSeq); err != nil {
			return fmt.Errorf("requesting the IPv4 routes of netns %s: %w", label(path), err)
		}
		n.Ev.Seq = primeDumpSeq
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if old := ls.byNs[ino]; old != nil {
		ls.closeLocked(ino, old)
	}
	ls.byNs[ino] = &listener{l: l, path: path, portid: portid}
	if ls.onSocket != nil {
		ls.onSocket(ino, portid, true)
	}
	ls.queued = append(ls.queued, n)
	ls.poke()
	return nil
}

// Remove closes the listener of a namespace that is gone.
func (ls *Listeners) Remove(ino uint32) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if old := ls.byNs[ino]; old != nil {
		ls.closeLocked(ino, old)
		delete(ls.byNs, ino)
		ls.queued = append(ls.queued, Note{Ev: event.Event{Netns: ino}, Kind: NoteGone})
		ls.poke()
	}
}

// Has reports whether a namespace is listened to.
func (ls *Listeners) Has(ino uint32) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.byNs[ino] != nil
}

// Len is the number of namespaces listened to.
func (ls *Listeners) Len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.byNs)
}

var errNoListener = errors.New("no listener in that network namespace")

// Dump asks the kernel for the IPv4 routes of a namespace; the answers
// come as notes with this seq.
func (ls *Listeners) Dump(ino, seq uint32) error {
	ls.mu.Lock()
	l := ls.byNs[ino]
	ls.mu.Unlock()
	if l == nil {
		return errNoListener
	}
	if err := l.l.RequestRouteDump(event.FamilyInet, seq); err != nil {
		ls.log.Warn("requesting an IPv4 route dump", "netns", ino, "err", err)
		return err
	}
	return nil
}

// TakeNews returns the news (listeners opened) not yet sent: the caller
// passes them to the joiner before Run starts, so that the records of the
// first changes find their namespaces listened to.
func (ls *Listeners) TakeNews() []Note {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	q := ls.queued
	ls.queued = nil
	return q
}

// Sync makes Run read every socket now, idle or not, and send NoteSynced
// once all were read to empty: whatever the kernel had notified before the
// call is then in the notes before it.
func (ls *Listeners) Sync() {
	ls.syncWanted.Store(true)
	ls.poke()
}

// Stop makes Run drain every socket once more and return.
func (ls *Listeners) Stop() {
	ls.stopping.Store(true)
	ls.poke()
}

// Close closes every socket.
func (ls *Listeners) Close() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for ino, l := range ls.byNs {
		ls.closeLocked(ino, l)
		delete(ls.byNs, ino)
	}
	if fd := ls.wakeFd.Swap(-1); fd >= 0 {
		unix.Close(int(fd))
	}
}

// Run reads every listener in turn until each is empty, then sleeps:
// BusyPoll while notifications flow, IdlePoll when idle. It returns once
// Stop was called and every socket has been drained.
func (ls *Listeners) Run(notes chan<- Note) {
	buf := make([]byte, 64<<10)
	var snapshot []uint32
	lastRead := time.Now()
	for {
		stopping := ls.stopping.Load()
		syncing := ls.syncWanted.Swap(false)
		read := ls.flushQueued(notes)
		snapshot = ls.inodes(snapshot[:0])
		for _, ino := range snapshot {
			for ls.readOne(ino, buf, notes) {
				read = true
			}
		}
		if ls.flushQueued(notes) {
			read = true
		}
		if syncing {
			notes <- Note{Kind: NoteSynced}
		}
		if stopping {
			return // drained after Stop
		}
		now := time.Now()
		if read {
			lastRead = now
		}
		if ls.wakeFd.Load() >= 0 {
			ls.waitReadable(snapshot)
		} else if now.Sub(lastRead) < IdleAfter {
			time.Sleep(BusyPoll)
		} else {
			ls.sleepIdle()
		}
	}
}

// sleepIdle sleeps up to IdlePoll, less if Stop is called or a listener
// is added or removed: one timer, no polling of its own.
func (ls *Listeners) sleepIdle() {
	t := time.NewTimer(IdlePoll)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ls.wake:
	}
}

// waitReadable waits until a socket of the namespaces in inos has
// something to read or poke is called, IdlePoll at most: the namespaces
// may have changed meanwhile, and poke says so.
func (ls *Listeners) waitReadable(inos []uint32) {
	wfd := ls.wakeFd.Load()
	if wfd < 0 {
		return // closed under us: Run is ending
	}
	pfds := append(ls.pfds[:0], unix.PollFd{Fd: wfd, Events: unix.POLLIN})
	ls.mu.Lock()
	for _, ino := range inos {
		if l := ls.byNs[ino]; l != nil {
			if fd := l.l.Fd(); fd >= 0 {
				pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
			}
		}
	}
	ls.mu.Unlock()
	ls.pfds = pfds
	if _, err := unix.Poll(pfds, int(IdlePoll.Milliseconds())); err != nil && !errors.Is(err, unix.EINTR) {
		time.Sleep(BusyPoll) // never spin on a failing poll
		return
	}
	if pfds[0].Revents&unix.POLLNVAL != 0 {
		time.Sleep(BusyPoll) // closed under us: Run is ending
		return
	}
	if pfds[0].Revents&unix.POLLIN != 0 {
		var b [8]byte
		unix.Read(int(wfd), b[:])
	}
}

// poke wakes an idle Run.
func (ls *Listeners) poke() {
	select {
	case ls.wake <- struct{}{}:
	default:
	}
	if fd := ls.wakeFd.Load(); fd >= 0 {
		one := [8]byte{1}
		unix.Write(int(fd), one[:])
	}
}

func (ls *Listeners) inodes(dst []uint32) []uint32 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for ino := range ls.byNs {
		dst = append(dst, ino)
	}
	return dst
}

func (ls *Listeners) flushQueued(notes chan<- Note) bool {
	ls.mu.Lock()
	q := ls.queued
	ls.queued = nil
	ls.mu.Unlock()
	for i := range q {
		notes <- q[i]
	}
	return len(q) > 0
}

// readOne reads one datagram from a namespace's listener and passes its
// messages on; false when the socket had nothing. A listener that fails
// for another reason than an overrun is opened again, and the gap counted.
func (ls *Listeners) readOne(ino uint32, buf []byte, notes chan<- Note) bool {
	ls.mu.Lock()
	ln := ls.byNs[ino]
	ls.mu.Unlock()
	if ln == nil {
		return false
	}
	size, err := ln.l.Poll(buf)
	if err == nil && size == 0 {
		return false
	}
	if errors.Is(err, rtnl.ErrOverrun) {
		ls.stats.NotificationsLost.Add(1)
		ls.log.Warn("rtnetlink notifications were dropped by the kernel (socket buffer full): resynchronising from a dump; changes in this window may be reported without their actor", "netns", ino)
		notes <- Note{Ev: event.Event{Netns: ino}, Kind: NoteOverrun}
		return true
	}
	if errors.Is(err, os.ErrClosed) {
		return false // removed or replaced while we read: not a failure
	}
	if err != nil {
		ls.restart(ino, ln, err)
		return false
	}
	now := time.Now()
	var n Note
	ev := &n.Ev
	for rest := buf[:size]; len(rest) > 0; {
		h, msg, next, err := rtnl.Next(rest)
		if err != nil {
			ls.stats.ReadErrors.Add(1)
			break
		}
		n.Hash = 0
		if h.Portid == 0 {
			n.Hash = OriginHash(rest)
		}
		rest = next
		*ev = event.Event{Netns: ino, Portid: h.Portid, Seq: h.Seq}
		n.LinkDown = false
		switch h.Type {
		case unix.NLMSG_DONE:
			n.Kind = NoteDumpEnd
		case unix.NLMSG_ERROR:
			n.Kind = NoteDumpFailed
		default:
			if rtnl.Decode(h, msg, ev) != nil {
				continue
			}
			ev.Netns, ev.Time, n.Kind = ino, now, NoteChange
			n.LinkDown = ev.Object == event.ObjectLink && rtnl.LinkDown(msg)
		}
		notes <- n
	}
	return true
}

// restart replaces a listener that failed: what happened in its namespace
// meanwhile is lost, so the gap is counted and logged, and the new
// listener's first dump resynchronises the route cache.
func (ls *Listeners) restart(ino uint32, old *listener, cause error) {
	ls.mu.Lock()
	current := ls.byNs[ino] == old
	ls.mu.Unlock()
	if ls.stopping.Load() || !current {
		return
	}
	ls.stats.ListenerGaps.Add(1)
	l, err := rtnl.ListenPolled(old.path, rcvbuf)
	if err == nil {
		err = ls.open(ino, old.path, l)
		if err != nil {
			l.Close()
		}
	}
	if err != nil {
		ls.log.Error("an rtnetlink listener failed and could not be reopened: changes in this namespace are not seen", "netns", ino, "err", cause, "reopen", err)
		ls.Remove(ino)
		return
	}
	ls.log.Warn("an rtnetlink listener failed and was reopened: changes in the gap may be missing", "netns", ino, "err", cause)
}

func label(path string) string {
	if path == "" {
		return "self"
	}
	return path
}
