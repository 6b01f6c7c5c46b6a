// Package rtnl decodes rtnetlink route, rule, nexthop, address and link
// messages into event.Event values, and listens for the kernel's rtnetlink
// notifications in a network namespace.
//
// Decoding never allocates and never panics: the same code decodes kernel
// notifications at flush rates (a million routes) and requests captured
// from untrusted processes, so it walks the bytes by offset and reports
// malformed input as sentinel errors instead of wrapped ones (wrapping
// would allocate on a path where callers only count and skip).
package rtnl

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/routetrace/routetrace/event"
)

// Errors returned by Next and Decode. They are bare sentinels, never
// wrapped, so that rejecting a malformed message costs no allocation;
// compare with errors.Is.
var (
	// ErrTruncated: the buffer ends before the netlink header, before the
	// length the header claims, or before the message's family header.
	ErrTruncated = errors.New("truncated netlink message")
	// ErrBadLength: nlmsg_len is smaller than the netlink header itself.
	ErrBadLength = errors.New("netlink message length shorter than its header")
	// ErrBadAttr: an attribute is shorter than its own header, runs past
	// the message, or holds a value of the wrong size for its type.
	ErrBadAttr = errors.New("malformed netlink attribute")
	// ErrUnknownType: not a route, rule, nexthop, address or link message;
	// callers skip these.
	ErrUnknownType = errors.New("unknown rtnetlink message type")
)

// HeaderLen is the size of struct nlmsghdr.
const HeaderLen = 16

// Header is struct nlmsghdr.
type Header struct {
	Len    uint32
	Type   uint16
	Flags  uint16
	Seq    uint32
	Portid uint32
}

// rtnetlink message types (linux/rtnetlink.h).
const (
	rtmNewLink    = 16
	rtmDelLink    = 17
	rtmSetLink    = 19
	rtmNewAddr    = 20
	rtmDelAddr    = 21
	rtmNewRoute   = 24
	rtmDelRoute   = 25
	rtmNewRule    = 32
	rtmDelRule    = 33
	rtmNewNexthop = 104
	rtmDelNexthop = 105
)

const (
	nlmFReplace  = 0x100
	nlaTypeMask  = 0x3fff
	iffUp        = 0x1
	rtnBlackhole = 6
)

// Family header sizes: struct rtmsg, fib_rule_hdr, nhmsg, ifaddrmsg,
// ifinfomsg. All are multiples of 4, so attributes start right after them.
const (
	rtmsgLen   = 12
	fibRuleLen = 12
	nhmsgLen   = 8
	ifaddrLen  = 8
	ifinfoLen  = 16
	rtnhLen    = 8 // struct rtnexthop
)

// Route attributes (RTA_*).
const (
	rtaDst       = 1
	rtaSrc       = 2
	rtaOif       = 4
	rtaGateway   = 5
	rtaPriority  = 6
	rtaMultipath = 9
	rtaTable     = 15
	rtaVia       = 18
	rtaNhID      = 30
)

// Rule attributes (FRA_*).
const (
	fraDst      = 1
	fraSrc      = 2
	fraIifname  = 3
	fraGoto     = 4
	fraPriority = 6
	fraFwmark   = 10
	fraTable    = 15
	fraFwmask   = 16
	fraOifname  = 17
	fraProtocol = 21
)

// Nexthop attributes (NHA_*).
const (
	nhaID        = 1
	nhaGroup     = 2
	nhaBlackhole = 4
	nhaOif       = 5
	nhaGateway   = 6
)

// Address and link attributes.
const (
	ifaAddress = 1
	ifaLocal   = 2
	iflaIfname = 3
)

var ne = binary.NativeEndian

func align4(n int) int { return (n + 3) &^ 3 }

// Next splits the first netlink message off buf. msg is the whole message,
// header included, exactly h.Len bytes; rest starts at the next aligned
// message (or is empty). On error h holds whatever header was read and
// msg and rest are nil: a receive buffer with a bad length cannot be
// resynchronised, so callers drop the rest of it.
func Next(buf []byte) (h Header, msg []byte, rest []byte, err error) {
	if len(buf) < HeaderLen {
		return h, nil, nil, ErrTruncated
	}
	h = Header{
		Len:    ne.Uint32(buf[0:]),
		Type:   ne.Uint16(buf[4:]),
		Flags:  ne.Uint16(buf[6:]),
		Seq:    ne.Uint32(buf[8:]),
		Portid: ne.Uint32(buf[12:]),
	}
	if h.Len < HeaderLen {
		return h, nil, nil, ErrBadLength
	}
	// Compare in uint64: nlmsg_len near 4 GiB must not wrap on 32-bit.
	if uint64(h.Len) > uint64(len(buf)) {
		return h, nil, nil, ErrTruncated
	}
	n := int(h.Len)
	next := align4(n)
	if next > len(buf) {
		// The last message of a datagram need not be padded.
		next = len(buf)
	}
	return h, buf[:n], buf[next:], nil
}

// Decode fills ev from one message (as split by Next, header included).
// It sets only the fields the message carries, so the caller resets ev
// first. Netns, Time, Origin and the actor are the caller's to fill.
func Decode(h Header, msg []byte, ev *event.Event) error {
	if len(msg) < HeaderLen {
		return ErrTruncated
	}
	// The header's length bounds the message: a captured request may sit
	// in a larger buffer, and bytes past nlmsg_len are not part of it.
	switch {
	case h.Len < HeaderLen:
		return ErrBadLength
	case uint64(h.Len) > uint64(len(msg)):
		return ErrTruncated
	}
	msg = msg[:h.Len]
	body := msg[HeaderLen:]

	var err error
	switch h.Type {
	case rtmNewRoute, rtmDelRoute:
		err = decodeRoute(body, ev)
	case rtmNewRule, rtmDelRule:
		err = decodeRule(body, ev)
	case rtmNewNexthop, rtmDelNexthop:
		err = decodeNexthop(body, ev)
	case rtmNewAddr, rtmDelAddr:
		err = decodeAddr(body, ev)
	case rtmNewLink, rtmSetLink, rtmDelLink:
		err = decodeLink(body, ev)
	default:
		return ErrUnknownType
	}
	if err != nil {
		return err
	}
	switch h.Type {
	case rtmNewRoute, rtmNewRule, rtmNewNexthop, rtmNewAddr, rtmNewLink, rtmSetLink:
		ev.Op = event.OpAdd
		if h.Flags&nlmFReplace != 0 {
			ev.Op = event.OpReplace
		}
	default:
		ev.Op = event.OpDelete
	}
	ev.Seq = h.Seq
	ev.Portid = h.Portid
	return nil
}

// LinkDown reports whether an RTM_NEWLINK or RTM_SETLINK message takes
// its interface down: IFF_UP is in ifi_change but not in ifi_flags.
func LinkDown(msg []byte) bool {
	if len(msg) < HeaderLen+ifinfoLen {
		return false
	}
	switch ne.Uint16(msg[4:]) {
	case rtmNewLink, rtmSetLink:
	default:
		return false
	}
	flags := ne.Uint32(msg[HeaderLen+8:])
	change := ne.Uint32(msg[HeaderLen+12:])
	return change&iffUp != 0 && flags&iffUp == 0
}

// nextAttr splits the first attribute off b. Its type is masked with
// NLA_TYPE_MASK so nested and byte-order flags do not hide it.
func nextAttr(b []byte) (typ uint16, val, rest []byte, err error) {
	if len(b) < 4 {
		return 0, nil, nil, ErrBadAttr
	}
	l := int(ne.Uint16(b))
	if l < 4 || l > len(b) {
		return 0, nil, nil, ErrBadAttr
	}
	next := align4(l)
	if next > len(b) {
		next = len(b)
	}
	return ne.Uint16(b[2:]) & nlaTypeMask, b[4:l], b[next:], nil
}

func attrU32(v []byte) (uint32, error) {
	if len(v) < 4 {
		return 0, ErrBadAttr
	}
	return ne.Uint32(v), nil
}

// attrAddr reads an address whose family is told by its length, the way
// the kernel's own attribute policies size them.
func attrAddr(v []byte) (netip.Addr, error) {
	switch len(v) {
	case 4:
		return netip.AddrFrom4([4]byte(v)), nil
	case 16:
		return netip.AddrFrom16([16]byte(v)), nil
	}
	return netip.Addr{}, ErrBadAttr
}

func attrPrefix(v []byte, bits uint8) (netip.Prefix, error) {
	a, err := attrAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	if int(bits) > a.BitLen() {
		return netip.Prefix{}, ErrBadAttr
	}
	return netip.PrefixFrom(a, int(bits)), nil
}

// attrName copies a NUL-terminated string into a Name, truncated to 15
// bytes as the kernel does, without converting through a string.
func attrName(n *event.Name, v []byte) {
	*n = event.Name{}
	for i, c := range v {
		if c == 0 {
			v = v[:i]
			break
		}
	}
	copy(n[:15], v)
}

// ipFamily reports whether route addresses of family are IP addresses:
// inet, inet6 and their multicast routing tables (RTNL_FAMILY_IPMR,
// RTNL_FAMILY_IP6MR). MPLS labels also come as RTA_DST and must not pass
// for IPv4 prefixes.
func ipFamily(f uint8) bool {
	switch f {
	case event.FamilyInet, event.FamilyInet6, 128, 129:
		return true
	}
	return false
}

// unspecified returns the zero address of family, or an invalid Addr for
// families that have no IP addresses (MPLS, bridge).
func unspecified(family uint8) netip.Addr {
	switch family {
	case event.FamilyInet:
		return netip.IPv4Unspecified()
	case event.FamilyInet6:
		return netip.IPv6Unspecified()
	}
	return netip.Addr{}
}

func decodeRoute(b []byte, ev *event.Event) error {
	if len(b) < rtmsgLen {
		return ErrTruncated
	}
	ev.Object = event.ObjectRoute
	ev.Family = b[0]
	dstLen, srcLen := b[1], b[2]
	ev.TOS = b[3]
	ev.Table = uint32(b[4])
	ev.Protocol = b[5]
	ev.Scope = b[6]
	ev.Type = b[7]

	// No RTA_DST means the kernel takes the all-zero address with
	// rtm_dst_len: with a length of 0, the default route.
	if u := unspecified(ev.Family); u.IsValid() && int(dstLen) <= u.BitLen() {
		ev.Dst = netip.PrefixFrom(u, int(dstLen))
	}

	var (
		mpOif uint32
		mpGw  netip.Addr
		err   error
	)
	for a := b[rtmsgLen:]; len(a) > 0; {
		var typ uint16
		var v []byte
		if typ, v, a, err = nextAttr(a); err != nil {
			return err
		}
		switch typ {
		case rtaDst:
			if ipFamily(ev.Family) {
				ev.Dst, err = attrPrefix(v, dstLen)
			}
		case rtaSrc:
			if ipFamily(ev.Family) {
				ev.Src, err = attrPrefix(v, srcLen)
			}
		case rtaOif:
			ev.Oif, err = attrU32(v)
		case rtaGateway:
			ev.Gateway, err = attrAddr(v)
		case rtaVia:
			ev.Gateway, err = attrVia(v)
		case rtaPriority:
			ev.Priority, err = attrU32(v)
		case rtaTable:
			ev.Table, err = attrU32(v)
		case rtaNhID:
			ev.NexthopID, err = attrU32(v)
		case rtaMultipath:
			ev.Multipath = true
			mpOif, mpGw, err = firstNexthop(v)
		}
		if err != nil {
			return err
		}
	}
	// A multipath route has no RTA_OIF or RTA_GATEWAY of its own; its first
	// hop stands for it in one-line output. Applied after the loop so the
	// attribute order does not matter.
	if ev.Oif == 0 {
		ev.Oif = mpOif
	}
	if !ev.Gateway.IsValid() {
		ev.Gateway = mpGw
	}
	return nil
}

// attrVia reads struct rtvia: a u16 address family, then the address.
func attrVia(v []byte) (netip.Addr, error) {
	if len(v) < 2 {
		return netip.Addr{}, ErrBadAttr
	}
	var a netip.Addr
	switch ne.Uint16(v) {
	case event.FamilyInet:
		if len(v) != 2+4 {
			return netip.Addr{}, ErrBadAttr
		}
		a = netip.AddrFrom4([4]byte(v[2:]))
	case event.FamilyInet6:
		if len(v) != 2+16 {
			return netip.Addr{}, ErrBadAttr
		}
		a = netip.AddrFrom16([16]byte(v[2:]))
	}
	// Other families (MPLS routes via AF_PACKET, a MAC address) have no
	// IP gateway to report; the route is still worth reporting.
	return a, nil
}

// firstNexthop reads the first struct rtnexthop of RTA_MULTIPATH and its
// gateway. Later hops are not reported but must still be well formed
// enough for the first one to be read.
func firstNexthop(v []byte) (oif uint32, gw netip.Addr, err error) {
	if len(v) == 0 {
		return 0, netip.Addr{}, nil
	}
	if len(v) < rtnhLen {
		return 0, netip.Addr{}, ErrBadAttr
	}
	l := int(ne.Uint16(v))
	if l < rtnhLen || l > len(v) {
		return 0, netip.Addr{}, ErrBadAttr
	}
	oif = ne.Uint32(v[4:])
	for a := v[rtnhLen:l]; len(a) > 0; {
		var typ uint16
		var val []byte
		if typ, val, a, err = nextAttr(a); err != nil {
			return 0, netip.Addr{}, err
		}
		switch typ {
		case rtaGateway:
			gw, err = attrAddr(val)
		case rtaVia:
			gw, err = attrVia(val)
		}
		if err != nil {
			return 0, netip.Addr{}, err
		}
	}
	return oif, gw, nil
}

func decodeRule(b []byte, ev *event.Event) error {
	if len(b) < fibRuleLen {
		return ErrTruncated
	}
	ev.Object = event.ObjectRule
	ev.Family = b[0]
	dstLen, srcLen := b[1], b[2]
	ev.TOS = b[3]
	ev.Table = uint32(b[4])
	ev.Action = b[7]

	var err error
	for a := b[fibRuleLen:]; len(a) > 0; {
		var typ uint16
		var v []byte
		if typ, v, a, err = nextAttr(a); err != nil {
			return err
		}
		switch typ {
		case fraDst:
			ev.Dst, err = attrPrefix(v, dstLen)
		case fraSrc:
			ev.Src, err = attrPrefix(v, srcLen)
		case fraIifname:
			attrName(&ev.IifName, v)
		case fraOifname:
			attrName(&ev.OifName, v)
		case fraGoto:
			ev.Goto, err = attrU32(v)
		case fraPriority:
			ev.Priority, err = attrU32(v)
		case fraFwmark:
			ev.FwMark, err = attrU32(v)
		case fraFwmask:
			ev.FwMask, err = attrU32(v)
		case fraTable:
			ev.Table, err = attrU32(v)
		case fraProtocol:
			if len(v) < 1 {
				err = ErrBadAttr
			} else {
				ev.Protocol = v[0]
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeNexthop(b []byte, ev *event.Event) error {
	if len(b) < nhmsgLen {
		return ErrTruncated
	}
	ev.Object = event.ObjectNexthop
	ev.Family = b[0]
	ev.Scope = b[1]
	ev.Protocol = b[2]

	var err error
	for a := b[nhmsgLen:]; len(a) > 0; {
		var typ uint16
		var v []byte
		if typ, v, a, err = nextAttr(a); err != nil {
			return err
		}
		switch typ {
		case nhaID:
			ev.NexthopID, err = attrU32(v)
		case nhaGroup:
			ev.Multipath = true
		case nhaBlackhole:
			ev.Type = rtnBlackhole
		case nhaOif:
			ev.Oif, err = attrU32(v)
		case nhaGateway:
			ev.Gateway, err = attrAddr(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeAddr(b []byte, ev *event.Event) error {
	if len(b) < ifaddrLen {
		return ErrTruncated
	}
	ev.Object = event.ObjectAddr
	ev.Family = b[0]
	prefixLen := b[1]
	ev.Scope = b[3]
	ev.Oif = ne.Uint32(b[4:])

	// On point-to-point links IFA_ADDRESS is the peer and IFA_LOCAL the
	// interface's own address; elsewhere both are the same.
	var local, addr []byte
	var err error
	for a := b[ifaddrLen:]; len(a) > 0; {
		var typ uint16
		var v []byte
		if typ, v, a, err = nextAttr(a); err != nil {
			return err
		}
		switch typ {
		case ifaLocal:
			local = v
		case ifaAddress:
			addr = v
		}
	}
	if local == nil {
		local = addr
	}
	if local != nil {
		ev.Dst, err = attrPrefix(local, prefixLen)
	}
	return err
}

func decodeLink(b []byte, ev *event.Event) error {
	if len(b) < ifinfoLen {
		return ErrTruncated
	}
	ev.Object = event.ObjectLink
	ev.Family = b[0]
	ev.Oif = ne.Uint32(b[4:])

	var err error
	for a := b[ifinfoLen:]; len(a) > 0; {
		var typ uint16
		var v []byte
		if typ, v, a, err = nextAttr(a); err != nil {
			return err
		}
		if typ == iflaIfname {
			attrName(&ev.Dev, v)
		}
	}
	return nil
}
