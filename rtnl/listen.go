package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrOverrun is returned by Poll when the kernel dropped notifications
// because the socket's receive buffer was full (ENOBUFS). The listener
// stays usable: count the overrun and poll again.
var ErrOverrun = errors.New("rtnetlink notifications dropped: receive buffer overrun")

// rtnetlink multicast groups (RTNLGRP_*). Joined with
// NETLINK_ADD_MEMBERSHIP rather than the bind mask because the bind mask
// only reaches group 32 minus one and RTNLGRP_NEXTHOP is 32.
var groups = [...]struct {
	id   int
	name string
}{
	{1, "link"},
	{5, "ipv4-ifaddr"},
	{7, "ipv4-route"},
	{8, "ipv4-rule"},
	{9, "ipv6-ifaddr"},
	{11, "ipv6-route"},
	{19, "ipv6-rule"},
	{32, "nexthop"},
}

// Listener receives rtnetlink notifications from one network namespace.
type Listener struct {
	netns  uint32
	closed atomic.Bool

	// mu is held for each syscall on fd, so that Close never closes the
	// number under one (and another file, given the number meanwhile,
	// never receives it).
	mu sync.Mutex
	// fd is the socket, which the runtime's poller never sees; -1 once
	// closed.
	fd int
}

// ListenPolled opens a NETLINK_ROUTE socket in the network namespace at
// nsPath ("" for the caller's own, else e.g. /run/netns/NAME or
// /proc/PID/ns/net) and joins the route, rule, nexthop, address and link
// groups; the caller receives with Poll. rcvbuf sets the receive buffer (0
// keeps the default); it is forced past net.core.rmem_max when the process
// has CAP_NET_ADMIN.
//
// The socket is never registered with the runtime's poller: with a waiter,
// every notification costs the task that caused it a wakeup (several
// microseconds inside its syscall), and a flush of a hundred thousand
// routes causes a hundred thousand of them.
func ListenPolled(nsPath string, rcvbuf int) (*Listener, error) {
	fd, ino, err := open(nsPath, rcvbuf)
	if err != nil {
		return nil, err
	}
	return &Listener{netns: ino, fd: fd}, nil
}

// open creates the socket in the namespace at nsPath, joined to the groups,
// and returns it with the namespace's inode.
func open(nsPath string, rcvbuf int) (fd int, ino uint32, err error) {
	if ino, err = NetnsInode(nsPath); err != nil {
		return -1, 0, err
	}
	if fd, err = socketIn(nsPath); err != nil {
		return -1, 0, err
	}
	if err := setup(fd, rcvbuf); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, ino, nil
}

// Poll receives one queued datagram of notifications into buf without
// waiting: 0 and no error when none is queued; split it with Next.
// ErrOverrun means notifications were lost and polling may go on;
// os.ErrClosed comes after Close. A buffer of at least 32 KiB holds any
// datagram the kernel sends; a longer one returns io.ErrShortBuffer.
//
// It calls recvfrom(2) directly because unix.Recvfrom allocates the
// sender's address on every call; MSG_TRUNC makes the kernel report a
// datagram's full length so truncation shows.
func (l *Listener) Poll(buf []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 || l.closed.Load() {
		return 0, os.ErrClosed
	}
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(l.fd), uintptr(p), uintptr(len(buf)),
			unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			if int(n) > len(buf) {
				return len(buf), fmt.Errorf("receiving a %d byte datagram into %d bytes: %w", n, len(buf), io.ErrShortBuffer)
			}
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		case unix.ENOBUFS:
			return 0, ErrOverrun
		}
		return 0, fmt.Errorf("receiving rtnetlink notifications: %w", e)
	}
}

// SocketIn creates a non-blocking NETLINK_ROUTE socket, unbound, inside the
// network namespace at nsPath ("" for the caller's own).
func SocketIn(nsPath string) (int, error) { return socketIn(nsPath) }

// socketIn creates the socket inside the namespace at nsPath. A socket
// belongs to the namespace it was created in for its whole life, so only
// the socket call needs to run there.
func socketIn(nsPath string) (int, error) {
	if nsPath == "" {
		return socket()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	// A goroutine of its own: if switching back fails, it exits still
	// locked to its thread and the runtime discards that thread instead
	// of letting other goroutines run in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("getting current netns: %w", err)}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("opening netns %s: %w", nsPath, err)}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("entering netns %s: %w", nsPath, err)}
			return
		}
		fd, err := socket()
		if err := netns.Set(orig); err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			ch <- result{-1, fmt.Errorf("returning from netns %s: %w", nsPath, err)}
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func socket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("creating rtnetlink socket: %w", err)
	}
	return fd, nil
}

func setup(fd, rcvbuf int) error {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding rtnetlink socket: %w", err)
	}
	if rcvbuf > 0 {
		err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf)
		if errors.Is(err, unix.EPERM) {
			// Without CAP_NET_ADMIN the kernel caps it at rmem_max.
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
		if err != nil {
			return fmt.Errorf("setting receive buffer to %d: %w", rcvbuf, err)
		}
	}
	for _, g := range groups {
		err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g.id)
		if errors.Is(err, unix.EINVAL) {
			// Kernels older than the group (nexthop: 5.3) refuse it;
			// the others still tell us most of what happens.
			slog.Warn("rtnetlink group not supported, skipping", "group", g.name, "id", g.id)
			continue
		}
		if err != nil {
			return fmt.Errorf("joining netlink group %d (%s): %w", g.id, g.name, err)
		}
	}
	return nil
}

// Netns returns the inode of the network namespace the listener watches.
func (l *Listener) Netns() uint32 { return l.netns }

// Fd is the socket's descriptor (-1 once closed), for socket options and
// for tests that break it on purpose. Closing it is Close's job.
func (l *Listener) Fd() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fd
}

// Close closes the socket; a second Close does nothing. Poll,
// RequestRouteDump and Portid then return os.ErrClosed.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err := unix.Close(l.fd)
	l.fd = -1
	if err != nil {
		return fmt.Errorf("closing rtnetlink socket: %w", err)
	}
	return nil
}

// NetnsInode returns the inode that identifies the network namespace at
// nsPath ("" for the caller's own), the value events carry as Netns.
func NetnsInode(nsPath string) (uint32, error) {
	if nsPath == "" {
		nsPath = "/proc/self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return 0, fmt.Errorf("reading netns inode of %s: %w", nsPath, err)
	}
	// Namespace inodes come from the kernel's proc inode allocator,
	// which hands out 32-bit numbers.
	return uint32(st.Ino), nil
}

// Links returns the name of every interface in the network namespace at
// nsPath ("" for the caller's own), by index. Meant for startup: later
// changes arrive as link notifications.
func Links(nsPath string) (map[uint32]string, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if nsPath == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var ns netns.NsHandle
		if ns, err = netns.GetFromPath(nsPath); err != nil {
			return nil, fmt.Errorf("opening netns %s: %w", nsPath, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle in netns %q: %w", nsPath, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links in netns %q: %w", nsPath, err)
	}
	m := make(map[uint32]string, len(links))
	for _, l := range links {
		a := l.Attrs()
		m[uint32(a.Index)] = a.Name
	}
	return m, nil
}

// Portid is the listener socket's netlink port id: the portid of the
// answers to its own requests (RequestRouteDump).
func (l *Listener) Portid() (uint32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return 0, os.ErrClosed
	}
	return PortidOf(l.fd)
}

// PortidOf is the netlink port id a bound socket got: the portid the
// kernel's notifications of its requests carry.
func PortidOf(fd int) (uint32, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("getsockname of rtnetlink socket: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("rtnetlink socket has a %T address", sa)
	}
	return nl.Pid, nil
}

// RequestRouteDump asks the kernel for every route of one family, in every
// table. The answer (RTM_NEWROUTE messages with this seq, then NLMSG_DONE)
// arrives on the listener's own queue, after every notification queued
// before it: read in order, the dump is a consistent cut.
func (l *Listener) RequestRouteDump(family uint8, seq uint32) error {
	var req [HeaderLen + 12]byte // nlmsghdr + rtmsg
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], seq)
	req[HeaderLen] = family
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 || l.closed.Load() {
		return os.ErrClosed
	}
	if err := unix.Sendto(l.fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("requesting a route dump: %w", err)
	}
	return nil
}
