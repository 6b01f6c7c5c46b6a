// Package netnswatch follows every network namespace on the node, so that
// tier 3 can listen to rtnetlink notifications in each one, including the
// pods created after routetrace started.
//
// A namespace exists for routetrace while a process or thread other than
// routetrace's own is in it (/proc/PID/ns/net, /proc/PID/task/TID/ns/net)
// or it is bind-mounted (`ip netns add` under /run/netns, container
// runtimes under /run/docker/netns and elsewhere: every nsfs mount listed
// in /proc/self/mountinfo). Whether the kernel still has the namespace
// cannot be the test: the netlink socket routetrace opens in a namespace,
// and the descriptor the Watcher holds on it, keep it alive after its
// last process exits. For the same reason routetrace's own threads never
// count (one may be inside a namespace to open a socket there).
//
// Use:
//
//	w, err := netnswatch.New(netnswatch.Options{Only: flagNetns})
//	defer w.Close()
//	go w.Run(ctx, func(ns netnswatch.Namespace) { listen(ns.Path) }, func(ino uint32) { stop(ino) })
//	// and when a captured request comes from a namespace not followed yet:
//	if ns, isNew := w.Hint(tid, netnsInode); isNew { listen(ns.Path) }
//
// A Scan costs one getdents of /proc per few hundred entries and one
// readlink per process (no open, no allocation per process): 4-8 µs per
// process on our loaded 2-core host, so 1000 processes every 2 s take
// 0.2-0.4 % of a core (BenchmarkScan). Between scans, Hint follows a new
// namespace at its first captured request. /proc/self/mountinfo is read
// again only when poll says the mount table changed. Threads of
// multi-threaded processes are read on the first scan, every
// threadScanEvery-th scan, and whenever a followed namespace was not seen
// otherwise (before it is declared gone), since they are many and rarely
// in a namespace of their own; in between, a namespace only a thread is
// in costs one readlink of that thread, and Hint covers a thread that
// makes a change from a namespace of its own.
//
// /proc must show the node's processes: in a container, run with the
// host's pid namespace (hostPID) and the host's /run mounted.
package netnswatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Namespace is one network namespace the Watcher follows.
type Namespace struct {
	// Inode identifies it, as `ls -iL /proc/PID/ns/net` shows and events
	// carry in Netns.
	Inode uint32
	// Path opens it for as long as the Watcher follows it: /proc/self/fd/N,
	// a descriptor the Watcher holds, so it cannot be a different namespace
	// after a pid is reused or a name re-created, and a short-lived
	// process's namespace can still be entered after it exited. Pass it to
	// rtnl.ListenPolled. It stays valid until the Scan after the one that
	// reported the namespace removed, or Close.
	Path string
	// Origin says where it was found, for people: its bind mount
	// (/run/netns/NAME) if any, else /proc/PID/ns/net of a process in it,
	// or the --netns path that named it.
	Origin string
}

// Options configure a Watcher.
type Options struct {
	// Interval is the rescan period of Run; 0 means 2 s.
	Interval time.Duration
	// Only narrows the namespaces followed to these (--netns): names in
	// /run/netns or paths to a namespace file. Routetrace's own namespace
	// is always followed. Empty means every namespace.
	Only []string
	// Logger receives what was found and lost; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultInterval is the rescan period when Options.Interval is 0.
const DefaultInterval = 2 * time.Second

// threadScanEvery is how often (in scans) threads are stat'ed when no
// followed namespace went missing: every 30 s at the default interval.
const threadScanEvery = 15

// Watcher follows the network namespaces on the node. Its methods are safe
// to call from several goroutines; scans run one at a time.
type Watcher struct {
	interval time.Duration
	log      *slog.Logger
	self     uint32
	only     []onlyPath // nil: every namespace

	// Owned by the scan in progress (scanMu).
	scanMu       sync.Mutex
	procs        *procScanner
	mounts       *mountTable
	seen         map[uint32]source
	scans        int
	pendingClose []int
	deniedWarned bool
	// threadHeld maps each namespace only a thread was found in (no
	// process leader, no mount) to that thread, so that scans between
	// thread scans check it with one readlink instead of a thread scan.
	threadHeld map[uint32]uint32

	mu      sync.RWMutex
	known   map[uint32]*entry
	seq     uint64          // scans started; an entry born in scan seq is not judged by it
	allowed map[uint32]bool // inodes Only resolved to at the last scan
	closed  bool
}

// onlyPath is one --netns entry: what the user wrote, and the path with
// its terminating NUL for statx.
type onlyPath struct {
	arg, path string
	cpath     []byte
}

// source is where a scan saw a namespace: a process or thread id, and a
// path (bind mount or --netns entry) when it has one.
type source struct {
	pid    uint32
	thread bool // pid is a thread, not a process's leader
	path   string
}

type entry struct {
	ns   Namespace
	fd   int
	born uint64
}

// New checks Options.Only (each must name a network namespace now) and
// opens /proc and the mount table. The first Scan reports every
// namespace, routetrace's own included.
func New(opts Options) (*Watcher, error) {
	w := &Watcher{
		interval:   opts.Interval,
		log:        opts.Logger,
		seen:       make(map[uint32]source),
		threadHeld: make(map[uint32]uint32),
		known:      make(map[uint32]*entry),
	}
	if w.interval <= 0 {
		w.interval = DefaultInterval
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("reading our own network namespace: %w", err)
	}
	w.self = uint32(st.Ino)
	for _, arg := range opts.Only {
		p, err := checkOnly(arg)
		if err != nil {
			return nil, err
		}
		w.only = append(w.only, p)
	}
	var err error
	if w.procs, err = openProc("/proc", os.Getpid()); err != nil {
		return nil, err
	}
	if w.mounts, err = openMountTable("/proc/self/mountinfo"); err != nil {
		w.procs.close()
		return nil, err
	}
	w.allowed = w.resolveOnly()
	return w, nil
}

// NetnsPath resolves one --netns entry (a name in /run/netns or a path)
// to the path of a network namespace, or says what is wrong with it.
func NetnsPath(arg string) (string, error) {
	o, err := checkOnly(arg)
	return o.path, err
}

// checkOnly resolves one --netns entry and checks that it opens a network
// namespace.
func checkOnly(arg string) (onlyPath, error) {
	const fix = "name one from `ip netns list` or give a path like /proc/PID/ns/net"
	path := arg
	if !strings.ContainsRune(arg, '/') {
		path = "/run/netns/" + arg
	}
	if arg == "" {
		return onlyPath{}, fmt.Errorf("--netns: empty name (%s)", fix)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return onlyPath{}, fmt.Errorf("--netns %s: opening %s: %w (%s)", arg, path, err, fix)
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		return onlyPath{}, fmt.Errorf("--netns %s: %s is not a network namespace (%s)", arg, path, fix)
	}
	return onlyPath{arg: arg, path: path, cpath: append([]byte(path), 0)}, nil
}

// resolveOnly returns the inodes the Only entries name now (a name can be
// deleted and created again as another namespace); nil when Only is empty.
func (w *Watcher) resolveOnly() map[uint32]bool {
	if w.only == nil {
		return nil
	}
	allowed := make(map[uint32]bool, len(w.only))
	var stx unix.Statx_t
	for _, o := range w.only {
		if statx(unix.AT_FDCWD, &o.cpath[0], unix.STATX_INO, &stx) == 0 {
			allowed[uint32(stx.Ino)] = true
		}
	}
	return allowed
}

// allows reports whether inode may be followed; w.mu held.
func (w *Watcher) allows(inode uint32) bool {
	return w.only == nil || inode == w.self || w.allowed[inode]
}

// Self is the inode of routetrace's own network namespace, which is
// always followed and never removed: a socket can be opened there without
// entering it.
func (w *Watcher) Self() uint32 { return w.self }

// Known reports whether the namespace is followed now.
func (w *Watcher) Known(inode uint32) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	_, ok := w.known[inode]
	return ok
}

// Namespaces returns every namespace followed now.
func (w *Watcher) Namespaces() []Namespace {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]Namespace, 0, len(w.known))
	for _, e := range w.known {
		out = append(out, e.ns)
	}
	return out
}

// Scan makes one pass: it returns the namespaces that appeared since the
// last pass (all of them on the first) and the inodes of those gone. A
// namespace Hint added is not returned again. On error nothing is
// removed: a partial view of /proc must not end a live namespace.
func (w *Watcher) Scan() (added []Namespace, removed []uint32, err error) {
	w.scanMu.Lock()
	defer w.scanMu.Unlock()
	for _, fd := range w.pendingClose {
		unix.Close(fd)
	}
	w.pendingClose = w.pendingClose[:0]

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, nil, errors.New("scanning network namespaces: watcher closed")
	}
	w.seq++
	seq := w.seq
	w.mu.Unlock()

	threads := w.scans%threadScanEvery == 0
	w.scans++
	if err := w.collect(threads); err != nil {
		return nil, nil, err
	}
	allowed := w.resolveOnly()
	if !threads {
		w.checkThreadHeld()
		if w.missing(seq) {
			// Confirm with every thread before declaring a namespace gone.
			threads = true
			if err := w.procs.scan(w.seen, true); err != nil {
				return nil, nil, fmt.Errorf("scanning network namespaces: %w", err)
			}
		}
	}
	if threads {
		clear(w.threadHeld)
		for ino, s := range w.seen {
			if s.thread && s.path == "" {
				w.threadHeld[ino] = s.pid
			}
		}
	}
	if w.procs.denied > 0 && !w.deniedWarned {
		w.deniedWarned = true
		// Reading another process's ns link needs ptrace read access:
		// root in the node's user namespace has it, barring an LSM.
		w.log.Warn("the network namespace of some processes cannot be read (permission denied): a namespace only they are in is not followed; run as root in the host's user namespace", "denied", w.procs.denied)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.allowed = allowed
	for ino, e := range w.known {
		if _, ok := w.seen[ino]; ok || e.born >= seq {
			continue
		}
		delete(w.known, ino)
		w.pendingClose = append(w.pendingClose, e.fd)
		removed = append(removed, ino)
		w.log.Debug("network namespace gone", "inode", ino, "origin", e.ns.Origin)
	}
	for ino, src := range w.seen {
		if _, ok := w.known[ino]; ok || !w.allows(ino) {
			continue
		}
		e, err := w.open(ino, src)
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
			// Each followed namespace holds a descriptor: say so, or
			// namespaces would go unwatched without a word.
			w.log.Warn("cannot follow a network namespace: out of file descriptors (raise ulimit -n)", "inode", ino, "followed", len(w.known), "err", err)
			continue
		}
		if err != nil {
			// Gone between the readlink and the open, or a path now names
			// another namespace: the next scan sees how things are then.
			w.log.Debug("opening network namespace", "inode", ino, "err", err)
			continue
		}
		e.born = seq
		w.known[ino] = e
		added = append(added, e.ns)
		w.log.Debug("following network namespace", "inode", ino, "origin", e.ns.Origin)
	}
	return added, removed, nil
}

// collect fills w.seen with every namespace alive now: ours, the bind
// mounts, the processes (and threads), and the Only entries.
func (w *Watcher) collect(threads bool) error {
	clear(w.seen)
	w.seen[w.self] = source{path: "/proc/self/ns/net"}
	if _, err := w.mounts.refresh(); err != nil {
		return fmt.Errorf("scanning network namespaces: %w", err)
	}
	for _, m := range w.mounts.mounts {
		if s, ok := w.seen[m.inode]; !ok || s.path == "" {
			w.seen[m.inode] = source{path: m.path}
		}
	}
	if err := w.procs.scan(w.seen, threads); err != nil {
		return fmt.Errorf("scanning network namespaces: %w", err)
	}
	// An Only path that opens a namespace is alive by definition, even one
	// naming a thread between thread scans.
	var stx unix.Statx_t
	for _, o := range w.only {
		if statx(unix.AT_FDCWD, &o.cpath[0], unix.STATX_INO, &stx) != 0 {
			continue
		}
		if s := w.seen[uint32(stx.Ino)]; s.path == "" {
			s.path = o.path
			w.seen[uint32(stx.Ino)] = s
		}
	}
	return nil
}

// checkThreadHeld marks as seen each namespace the last thread scan found
// only in a thread, if that thread is still in it.
func (w *Watcher) checkThreadHeld() {
	for ino, tid := range w.threadHeld {
		if _, ok := w.seen[ino]; ok {
			continue
		}
		if got, ok := w.procs.threadInode(tid); ok && got == ino {
			w.seen[ino] = source{pid: tid, thread: true}
		} else {
			delete(w.threadHeld, ino)
		}
	}
}

// missing reports whether a followed namespace born before scan seq was
// not seen by this scan.
func (w *Watcher) missing(seq uint64) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for ino, e := range w.known {
		if _, ok := w.seen[ino]; !ok && e.born < seq {
			return true
		}
	}
	return false
}

// open takes a descriptor on the namespace a scan saw: through its path
// when it has one, else through the process.
func (w *Watcher) open(ino uint32, src source) (*entry, error) {
	var errs []error
	if src.path != "" {
		fd, err := openNamespace(src.path, ino)
		if err == nil {
			return newEntry(ino, fd, src.path), nil
		}
		errs = append(errs, err)
	}
	if src.pid != 0 {
		origin := fmt.Sprintf("/proc/%d/ns/net", src.pid)
		fd, err := openNamespace(origin, ino)
		if err == nil {
			return newEntry(ino, fd, origin), nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func newEntry(ino uint32, fd int, origin string) *entry {
	return &entry{fd: fd, ns: Namespace{Inode: ino, Path: fmt.Sprintf("/proc/self/fd/%d", fd), Origin: origin}}
}

// openNamespace opens path and checks that it is the namespace with inode
// ino: a pid may have been reused, or a name re-created.
func openNamespace(path string, ino uint32) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", path, err)
	}
	if uint32(st.Ino) != ino {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is now namespace %d, not %d", path, st.Ino, ino)
	}
	return fd, nil
}

// Hint is for a change seen from namespace inode, made by thread pid (a
// tid: a thread can be in another namespace than its process), when the
// namespace may be new. If inode is not followed yet, is allowed by Only,
// and pid is still in it, Hint opens it at once, before a short-lived
// process exits, and returns it with true; the caller starts listening,
// and Run will not report it again. It returns the namespace with false
// when it is followed already, and false alone when it cannot be
// followed. Cheap when the answer is no: no syscall for a followed or
// excluded inode.
func (w *Watcher) Hint(pid, inode uint32) (Namespace, bool) {
	w.mu.RLock()
	e, known := w.known[inode]
	allowed, closed := w.allows(inode), w.closed
	w.mu.RUnlock()
	if known {
		return e.ns, false
	}
	if !allowed || closed || pid == 0 {
		return Namespace{}, false
	}
	origin := fmt.Sprintf("/proc/%d/ns/net", pid)
	fd, err := openNamespace(origin, inode)
	if err != nil {
		w.log.Debug("following a hinted network namespace", "inode", inode, "pid", pid, "err", err)
		return Namespace{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, known := w.known[inode]; known || w.closed {
		unix.Close(fd)
		if known {
			return e.ns, false
		}
		return Namespace{}, false
	}
	// Born in the scan running now, if any, which may have listed /proc
	// before pid entered it: only the next scan judges whether it lives.
	e = newEntry(inode, fd, origin)
	e.born = w.seq
	w.known[inode] = e
	w.log.Debug("following network namespace", "inode", inode, "origin", origin, "hinted", true)
	return e.ns, true
}

// Run scans now and every Options.Interval until ctx ends, calling onAdd
// for each namespace that appeared and onRemove for each that is gone, in
// the calling goroutine. A failed scan is logged and tried again at the
// next tick.
func (w *Watcher) Run(ctx context.Context, onAdd func(Namespace), onRemove func(inode uint32)) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		added, removed, err := w.Scan()
		if err != nil {
			w.log.Warn("scanning network namespaces", "err", err)
		}
		for _, ns := range added {
			onAdd(ns)
		}
		for _, ino := range removed {
			onRemove(ino)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Close releases every descriptor; the Paths handed out stop working.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	known := maps.Clone(w.known)
	clear(w.known)
	w.mu.Unlock()

	w.scanMu.Lock()
	defer w.scanMu.Unlock()
	for _, e := range known {
		unix.Close(e.fd)
	}
	for _, fd := range w.pendingClose {
		unix.Close(fd)
	}
	w.pendingClose = nil
	w.procs.close()
	w.mounts.close()
	return nil
}
