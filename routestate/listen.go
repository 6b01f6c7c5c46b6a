package routestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/rtnl"
)

// The groups the store follows: links (names for Keep, and devices that
// went away), routes and rules of both families, nexthop objects.
var groups = [...]int{
	unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE,
	unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE, unix.RTNLGRP_NEXTHOP,
}

// subRcvbuf holds a burst of notifications (a flush of 100k routes is
// about 10 MB of them) while the reader catches up; tests shrink it.
var subRcvbuf = 32 << 20

// subscribe opens the notification socket in the namespace at path. Unlike
// tier 3's polled listeners it is read by a goroutine blocked on the
// runtime's poller: a repair must not wait for the next poll to know what
// was deleted.
func subscribe(path string) (*os.File, error) {
	fd, err := rtnl.SocketIn(path)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding rtnetlink socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, subRcvbuf); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting receive buffer to %d: %w", subRcvbuf, err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil && !(g == unix.RTNLGRP_NEXTHOP && errors.Is(err, unix.EINVAL)) {
			unix.Close(fd)
			return nil, fmt.Errorf("joining rtnetlink group %d: %w", g, err)
		}
	}
	// The descriptor is non-blocking: os.NewFile hands it to the poller.
	return os.NewFile(uintptr(fd), "rtnetlink"), nil
}

// dumps are the dump requests of a full resynchronisation, in order: the
// links first, so that routes are kept or not knowing their device's name.
var dumps = [...]struct {
	typ    uint16
	hdrLen int
	obj    event.Object
}{
	{unix.RTM_GETLINK, unix.SizeofIfInfomsg, event.ObjectLink},
	{unix.RTM_GETROUTE, unix.SizeofRtMsg, event.ObjectRoute},
	{unix.RTM_GETRULE, unix.SizeofRtMsg, event.ObjectRule}, // struct fib_rule_hdr: 12 bytes too
	{unix.RTM_GETNEXTHOP, 8, event.ObjectNexthop},          // struct nhmsg
}

// dumpSeqBase numbers the dumps: seq = base + index, above anything the
// kernel's notifications carry for this socket (they carry 0).
const dumpSeqBase = 1

func dumpRequest(i int) []byte {
	d := dumps[i]
	req := make([]byte, rtnl.HeaderLen+d.hdrLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], d.typ)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], dumpSeqBase+uint32(i))
	return req // family AF_UNSPEC: every family
}

// read follows one namespace until its socket is closed: a full dump, then
// notifications; after an overrun, a full dump again.
func (s *Store) read(ns *netnsState) {
	defer close(ns.done)
	buf := make([]byte, 1<<20)
	dumping := -1 // index of the dump in flight, -1: none
	startDump := func() error {
		dumping = 0
		s.mu.Lock()
		ns.epoch++
		s.mu.Unlock()
		return ns.send(dumpRequest(0))
	}
	if err := startDump(); err != nil {
		s.log.Error("requesting a dump", "netns", ns.ino, "err", err)
		return
	}
	for {
		ns.subMu.Lock()
		sub := ns.sub
		ns.subMu.Unlock()
		n, err := sub.Read(buf)
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, os.ErrClosed) && ns.takeResync() {
			// Notifications were lost, and maybe the answer to a dump in
			// flight, which would then never end (or Resync was asked
			// for): start over on a new socket, subscribed before its
			// dump, like the first.
			if errors.Is(err, unix.ENOBUFS) {
				s.log.Warn("rtnetlink notifications dropped (socket buffer full): dumping again", "netns", ns.ino)
			}
			err = ns.resubscribe()
			if err == nil {
				err = startDump()
			}
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					s.log.Error("subscribing again after an overrun: no longer repairing in this namespace", "netns", ns.ino, "err", err)
				}
				return
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				s.log.Error("reading rtnetlink notifications: no longer repairing in this namespace", "netns", ns.ino, "err", err)
			}
			return
		}
		for rest := buf[:n]; len(rest) > 0; {
			h, msg, next, err := rtnl.Next(rest)
			if err != nil {
				s.log.Warn("malformed rtnetlink message", "netns", ns.ino, "err", err)
				break
			}
			rest = next
			if h.Type != unix.NLMSG_DONE && h.Type != unix.NLMSG_ERROR {
				s.handle(ns, h, msg)
				continue
			}
			if dumping < 0 || h.Seq != dumpSeqBase+uint32(dumping) {
				continue
			}
			if code, _ := rtnl.ErrorCode(h, msg); code != 0 {
				// A kernel without nexthop objects refuses their dump.
				s.log.Debug("dump refused", "netns", ns.ino, "what", dumps[dumping].obj.String(), "errno", code)
			}
			s.sweep(ns, dumps[dumping].obj)
			if dumping++; dumping == len(dumps) {
				dumping = -1
				select {
				case <-ns.ready:
				default:
					close(ns.ready)
				}
				continue
			}
			if err := ns.send(dumpRequest(dumping)); err != nil {
				s.log.Error("requesting a dump", "netns", ns.ino, "err", err)
				return
			}
		}
	}
}

// takeResync reports (once) that Resync closed the subscription.
func (ns *netnsState) takeResync() bool {
	ns.subMu.Lock()
	defer ns.subMu.Unlock()
	r := ns.resync && !ns.closed
	ns.resync = false
	return r
}

// resubscribe replaces the subscription socket.
func (ns *netnsState) resubscribe() error {
	sub, err := subscribe(ns.path)
	if err != nil {
		return err
	}
	ns.subMu.Lock()
	defer ns.subMu.Unlock()
	if ns.closed {
		sub.Close()
		return os.ErrClosed
	}
	ns.sub.Close()
	ns.sub = sub
	return nil
}

// send sends a request on the subscription socket; only the reader calls
// it, so ns.sub is not replaced under it.
func (ns *netnsState) send(req []byte) error {
	rc, err := ns.sub.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	}); err != nil {
		return err
	}
	return serr
}

// handle applies one message, a dump answer or a notification.
func (s *Store) handle(ns *netnsState, h rtnl.Header, msg []byte) {
	var ev event.Event
	if rtnl.Decode(h, msg, &ev) != nil {
		return
	}
	ev.Netns = ns.ino
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bury(ns, now)
	if ev.Object == event.ObjectLink {
		if ev.Op == event.OpDelete {
			delete(ns.links, ev.Oif)
		} else if ev.Dev[0] != 0 {
			ns.links[ev.Oif] = ev.Dev
		}
		return
	}
	if ev.Object == event.ObjectRoute && ev.Family != event.FamilyInet && ev.Family != event.FamilyInet6 {
		return // MPLS and others: nothing routetrace protects
	}
	if ev.Object != event.ObjectRoute && ev.Object != event.ObjectRule && ev.Object != event.ObjectNexthop {
		return
	}
	k := KeyOf(&ev)
	if ev.Op == event.OpDelete {
		if e := ns.objs[k]; e != nil && e.gone == 0 {
			e.gone, e.byKernel = now, h.Portid == 0
			ns.graves = append(ns.graves, grave{key: k, at: now})
		}
		return
	}
	if ev.Object == event.ObjectRoute && ev.Oif != 0 {
		ev.Dev = ns.links[ev.Oif]
	}
	if s.opts.Keep != nil && !s.opts.Keep(&ev) {
		delete(ns.objs, k) // replaced by one no longer protected
		return
	}
	e := ns.objs[k]
	if e == nil {
		e = &entry{}
		ns.objs[k] = e
	}
	e.msg = append(e.msg[:0], msg...)
	e.gone, e.epoch, e.nhid = 0, ns.epoch, ev.NexthopID
}

// sweep ends a dump: objects of its kind that it did not see were deleted
// while notifications were lost.
func (s *Store) sweep(ns *netnsState, obj event.Object) {
	if obj == event.ObjectLink {
		return
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range ns.objs {
		if k.Object == obj && e.gone == 0 && e.epoch != ns.epoch {
			e.gone = now
			ns.graves = append(ns.graves, grave{key: k, at: now})
		}
	}
}

// bury forgets deleted objects older than the graveyard time; s.mu is held.
func (s *Store) bury(ns *netnsState, now int64) {
	limit := now - int64(s.opts.Graveyard)
	n := 0
	for ; n < len(ns.graves) && ns.graves[n].at < limit; n++ {
		g := ns.graves[n]
		if e := ns.objs[g.key]; e != nil && e.gone == g.at {
			delete(ns.objs, g.key) // not re-added since
		}
	}
	if n > 0 {
		ns.graves = append(ns.graves[:0], ns.graves[n:]...)
	}
}
