package routestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/rtnl"
)

// ackWait bounds the wait for the kernel's answer to a re-install: it
// answers within the request's own syscall, so only a stuck namespace
// would take long.
const ackWait = time.Second

// Reinstall re-creates an object from its snapshot, in its namespace, and
// returns when the kernel acknowledged it. It fails with ErrNoSnapshot or
// ErrNotFollowed when there is nothing to re-install, else with the
// kernel's errno (unix.EEXIST: it is back already; unix.ENODEV: its device
// is gone).
func (s *Store) Reinstall(k Key) (time.Time, error) {
	ns, msg, err := s.message(k)
	if err != nil {
		return time.Time{}, err
	}
	var acked time.Time
	err = ns.request(func(seq uint32) ([]byte, error) { return requestFrom(msg, seq) }, func(rtnl.Header, []byte) {})
	if err == nil {
		acked = time.Now()
	}
	return acked, err
}

// Missing lists the routes of a family (0: both) through nexthop object
// nhid (0: any) that the snapshot has as present in a namespace, or as
// deleted by the kernel itself since (Unix ns; 0: none), and a fresh dump
// does not have: those the kernel removed without a notification (an IPv4
// flush), whose notification was not read yet, or that went with their
// nexthop.
func (s *Store) Missing(netns uint32, family uint8, nhid uint32, since int64) ([]Key, error) {
	s.mu.Lock()
	ns := s.byNs[netns]
	s.mu.Unlock()
	if ns == nil {
		return nil, ErrNotFollowed
	}
	there := make(map[Key]bool)
	err := ns.request(func(seq uint32) ([]byte, error) {
		req := dumpRequest(1) // routes
		ne.PutUint32(req[8:], seq)
		req[rtnl.HeaderLen] = family
		return req, nil
	}, func(h rtnl.Header, msg []byte) {
		var ev event.Event
		if rtnl.Decode(h, msg, &ev) == nil && ev.Object == event.ObjectRoute {
			ev.Netns = netns
			there[KeyOf(&ev)] = true
		}
	})
	if err != nil {
		return nil, fmt.Errorf("dumping the routes: %w", err)
	}
	var missing []Key
	for _, k := range s.keys(netns, family, nhid, since) {
		if !there[k] {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

// request sends build's request on the namespace's request socket and
// passes each message of the answer to each, until the ack, the error, or
// a dump's end.
func (ns *netnsState) request(build func(seq uint32) ([]byte, error), each func(rtnl.Header, []byte)) error {
	ns.reqMu.Lock()
	defer ns.reqMu.Unlock()
	if ns.req < 0 {
		return ErrNotFollowed // closed meanwhile
	}
	ns.seq++
	req, err := build(ns.seq)
	if err != nil {
		return err
	}
	if err := unix.Sendto(ns.req, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending the request: %w", err)
	}
	return answer(ns.req, ns.seq, each)
}

// requestSocket opens the socket repairs are sent on, inside the namespace
// (a socket's namespace is where it was created), and marks it as ours so
// that tier 3 does not report the notifications of our own repairs.
func requestSocket(path string, ino uint32) (int, error) {
	fd, err := rtnl.SocketIn(path)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding the repair socket: %w", err)
	}
	// The kernel's own words for a refusal ("Nexthop device is not up"),
	// for the event's Reason; a kernel without extended acks still works.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	portid, err := rtnl.PortidOf(fd)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	rtnl.MarkOwn(ino, portid, true)
	return fd, nil
}

// answer reads the socket (non-blocking) until the end of the answer to
// seq: an ack (nil), an error (its errno) or NLMSG_DONE (nil), passing
// every other message of it to each.
func answer(fd int, seq uint32, each func(rtnl.Header, []byte)) error {
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(ackWait)
	for {
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("no answer from the kernel in %v", ackWait)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("waiting for the kernel's answer: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the kernel's answer: %w", err)
		}
		for rest := buf[:n]; len(rest) > 0; {
			h, msg, next, err := rtnl.Next(rest)
			if err != nil {
				break
			}
			rest = next
			switch {
			case h.Seq != seq:
				// the answer to an earlier request that timed out
			case h.Type == unix.NLMSG_DONE:
				return nil
			case h.Type == unix.NLMSG_ERROR:
				if code, _ := rtnl.ErrorCode(h, msg); code != 0 {
					return refusal(h, msg, unix.Errno(code))
				}
				return nil
			default:
				each(h, msg)
			}
		}
	}
}

// A Refusal is the kernel's refusal of a request: its errno, and its
// extended ack's message when it gave one.
type Refusal struct {
	Errno unix.Errno
	Msg   string
}

func (r *Refusal) Error() string {
	if r.Msg == "" {
		return r.Errno.Error()
	}
	return r.Errno.Error() + " (" + r.Msg + ")"
}

// Unwrap makes errors.Is(err, unix.EEXIST) work.
func (r *Refusal) Unwrap() error { return r.Errno }

// refusal reads NLMSGERR_ATTR_MSG from an NLMSG_ERROR with NLM_F_ACK_TLVS:
// struct nlmsgerr (the error, then the request's header, its body left
// out with NLM_F_CAPPED), then attributes.
func refusal(h rtnl.Header, msg []byte, errno unix.Errno) error {
	r := &Refusal{Errno: errno}
	if h.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return r
	}
	off := rtnl.HeaderLen + 4 + rtnl.HeaderLen
	if h.Flags&unix.NLM_F_CAPPED == 0 && len(msg) >= rtnl.HeaderLen+4+4 {
		off = rtnl.HeaderLen + 4 + int(ne.Uint32(msg[rtnl.HeaderLen+4:])) // the whole request echoed
	}
	for a := msg[min(off, len(msg)):]; len(a) >= 4; {
		l := int(ne.Uint16(a))
		if l < 4 || l > len(a) {
			break
		}
		if ne.Uint16(a[2:])&0x3fff == unix.NLMSGERR_ATTR_MSG {
			r.Msg = strings.TrimRight(string(a[4:l]), "\x00")
		}
		a = a[min((l+3)&^3, len(a)):]
	}
	return r
}

// Flags the kernel sets on its own and refuses (or recomputes) in a
// request.
const (
	rtnhFOnlink        = 0x4 // RTNH_F_ONLINK: the only nexthop flag a request sets
	rtnhFPervasive     = 0x2
	fibRuleUnresolved  = 0x4
	fibRuleIifDetached = 0x8
	fibRuleOifDetached = 0x10
)

// Route attributes: RTA_CACHEINFO is the kernel's statistics, and a route
// with RTA_NH_ID must not also describe its hops (the kernel describes
// them too, for old readers, and refuses both at once in a request).
const (
	rtaOif       = 4
	rtaGateway   = 5
	rtaMultipath = 9
	rtaFlow      = 11
	rtaCacheinfo = 12
	rtaVia       = 18
	rtaEncapType = 21
	rtaEncap     = 22
	rtaNhID      = 30
)

// nexthopRequestAttr: the NHA_* a request may carry (the kernel parses
// nexthop requests strictly; the rest are the kernel's own: NHA_OP_FLAGS,
// statistics).
var nexthopRequestAttr = map[uint16]bool{
	1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, // ID..ENCAP
	11: true, 12: true, 16: true, // FDB, RES_GROUP, HW_STATS_ENABLE
}

var ne = binary.NativeEndian

// requestFrom turns the kernel's description of an object (RTM_NEWROUTE,
// RTM_NEWRULE or RTM_NEWNEXTHOP, as dumped or notified) into the request
// that re-creates it: NLM_F_CREATE|NLM_F_EXCL, so that it never replaces
// what someone has put there meanwhile.
func requestFrom(msg []byte, seq uint32) ([]byte, error) {
	if len(msg) < rtnl.HeaderLen {
		return nil, rtnl.ErrTruncated
	}
	typ := ne.Uint16(msg[4:])
	var hdrLen int
	var keep func(typ uint16, val []byte) bool
	switch typ {
	case unix.RTM_NEWROUTE:
		hdrLen = unix.SizeofRtMsg
		hasNh := len(msg) > rtnl.HeaderLen+hdrLen && hasAttr(msg[rtnl.HeaderLen+hdrLen:], rtaNhID)
		keep = func(t uint16, _ []byte) bool {
			switch t {
			case rtaCacheinfo:
				return false
			case rtaOif, rtaGateway, rtaMultipath, rtaVia, rtaEncapType, rtaEncap, rtaFlow:
				return !hasNh
			}
			return true
		}
	case unix.RTM_NEWRULE:
		hdrLen = 12
	case unix.RTM_NEWNEXTHOP:
		hdrLen = 8
		keep = func(t uint16, _ []byte) bool { return nexthopRequestAttr[t] }
	default:
		return nil, fmt.Errorf("not a route, rule or nexthop message (type %d)", typ)
	}
	if len(msg) < rtnl.HeaderLen+hdrLen {
		return nil, rtnl.ErrTruncated
	}
	req := make([]byte, 0, len(msg))
	req = append(req, msg[:rtnl.HeaderLen+hdrLen]...)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	ne.PutUint32(req[8:], seq)
	ne.PutUint32(req[12:], 0)
	body := req[rtnl.HeaderLen:]
	switch typ {
	case unix.RTM_NEWROUTE: // rtm_flags: the kernel's LINKDOWN, DEAD, OFFLOAD... are refused
		ne.PutUint32(body[8:], ne.Uint32(body[8:])&(rtnhFOnlink|rtnhFPervasive))
	case unix.RTM_NEWRULE:
		ne.PutUint32(body[8:], ne.Uint32(body[8:])&^(fibRuleUnresolved|fibRuleIifDetached|fibRuleOifDetached))
	case unix.RTM_NEWNEXTHOP:
		// The kernel computes nh_scope and refuses one in a request.
		body[1], body[3] = 0, 0 // nh_scope, resvd
		ne.PutUint32(body[4:], ne.Uint32(body[4:])&rtnhFOnlink)
	}
	for a := msg[rtnl.HeaderLen+hdrLen:]; len(a) >= 4; {
		l := int(ne.Uint16(a))
		t := ne.Uint16(a[2:]) & 0x3fff
		if l < 4 || l > len(a) {
			return nil, rtnl.ErrBadAttr
		}
		next := min((l+3)&^3, len(a))
		if keep == nil || keep(t, a[4:l]) {
			start := len(req)
			req = append(req, a[:next]...)
			if typ == unix.RTM_NEWROUTE && t == rtaMultipath {
				maskHops(req[start+4 : start+l])
			}
		}
		a = a[next:]
	}
	ne.PutUint32(req[0:], uint32(len(req)))
	return req, nil
}

// maskHops clears, in each struct rtnexthop of RTA_MULTIPATH, the flags
// the kernel sets and refuses in a request (RTNH_F_DEAD, LINKDOWN...).
func maskHops(mp []byte) {
	for len(mp) >= 8 {
		l := int(ne.Uint16(mp))
		if l < 8 || l > len(mp) {
			return
		}
		mp[2] &= rtnhFOnlink
		mp = mp[min((l+3)&^3, len(mp)):]
	}
}

func hasAttr(a []byte, want uint16) bool {
	for len(a) >= 4 {
		l := int(ne.Uint16(a))
		if l < 4 || l > len(a) {
			return false
		}
		if ne.Uint16(a[2:])&0x3fff == want {
			return true
		}
		a = a[min((l+3)&^3, len(a)):]
	}
	return false
}
