// Package nltest builds rtnetlink messages byte by byte for tests: the
// well-formed ones iproute2 sends, and the malformed ones a hostile
// process may send. rtnl's decoder tests and tracer's BPF parser tests
// share it, so that both parsers are fed messages laid out the same way.
//
// Everything is in the host's byte order, as netlink is.
package nltest

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Msg is one netlink message under construction: nlmsghdr, family header,
// attributes. Its methods append and return the message, so that a message
// reads as one chain; Bytes sets nlmsg_len and returns a copy.
type Msg struct{ b []byte }

// NewMsg starts a message with the given header fields and family header
// (Rtmsg, FibRuleHdr, Nhmsg, Ifaddrmsg, Ifinfomsg, or any bytes), padded
// to NLMSG_ALIGNTO. nlmsg_len is set by Bytes.
func NewMsg(typ, flags uint16, seq, portid uint32, familyHdr []byte) *Msg {
	b := make([]byte, unix.SizeofNlMsghdr, 256)
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], portid)
	m := &Msg{append(b, familyHdr...)}
	return m.align()
}

func (m *Msg) align() *Msg {
	for len(m.b)%unix.NLA_ALIGNTO != 0 {
		m.b = append(m.b, 0)
	}
	return m
}

// Attr appends an attribute padded to NLA_ALIGNTO.
func (m *Msg) Attr(typ uint16, val []byte) *Msg {
	return m.AttrUnpadded(typ, val).align()
}

// AttrUnpadded appends an attribute with no padding after it, so that a
// last attribute can leave nlmsg_len unaligned, as the kernel allows.
func (m *Msg) AttrUnpadded(typ uint16, val []byte) *Msg {
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(unix.SizeofRtAttr+len(val)))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, val...)
	return m
}

// UnknownAttrs appends n attributes of a type no parser knows (0x3ff0),
// each size bytes long with its header (at least 4), to move the next
// attribute to a chosen offset or past a parser's attribute limit.
func (m *Msg) UnknownAttrs(n, size int) *Msg {
	for range n {
		m.Attr(0x3ff0, make([]byte, size-unix.SizeofRtAttr))
	}
	return m
}

// Raw appends bytes as they are, for malformed attributes.
func (m *Msg) Raw(b ...byte) *Msg {
	m.b = append(m.b, b...)
	return m
}

// Len is the number of bytes built so far.
func (m *Msg) Len() int { return len(m.b) }

// Bytes sets nlmsg_len to the message's length and returns a copy of it.
func (m *Msg) Bytes() []byte { return m.BytesWithLen(uint32(len(m.b))) }

// BytesWithLen sets nlmsg_len to n, whatever the message holds, and
// returns a copy of it: a header that claims more or less than follows.
func (m *Msg) BytesWithLen(n uint32) []byte {
	binary.NativeEndian.PutUint32(m.b, n)
	return append([]byte(nil), m.b...)
}

// Attr encodes one attribute padded to NLA_ALIGNTO, to nest in another
// (RTA_MULTIPATH's hops, RTA_METRICS).
func Attr(typ uint16, val []byte) []byte {
	return (&Msg{}).Attr(typ, val).b
}

// Rtmsg is struct rtmsg, the family header of RTM_*ROUTE (flags 0).
func Rtmsg(family, dstLen, srcLen, tos, table, protocol, scope, typ uint8) []byte {
	return []byte{family, dstLen, srcLen, tos, table, protocol, scope, typ, 0, 0, 0, 0}
}

// FibRuleHdr is struct fib_rule_hdr, the family header of RTM_*RULE
// (res1, res2 and flags 0).
func FibRuleHdr(family, dstLen, srcLen, tos, table, action uint8) []byte {
	return []byte{family, dstLen, srcLen, tos, table, 0, 0, action, 0, 0, 0, 0}
}

// Nhmsg is struct nhmsg, the family header of RTM_*NEXTHOP (flags 0).
func Nhmsg(family, scope, protocol uint8) []byte {
	return []byte{family, scope, protocol, 0, 0, 0, 0, 0}
}

// Ifaddrmsg is struct ifaddrmsg, the family header of RTM_*ADDR (flags 0).
func Ifaddrmsg(family, prefixLen, scope uint8, index uint32) []byte {
	return binary.NativeEndian.AppendUint32([]byte{family, prefixLen, 0, scope}, index)
}

// Ifinfomsg is struct ifinfomsg, the family header of RTM_*LINK, with
// family AF_UNSPEC and devType an ARPHRD_* value.
func Ifinfomsg(devType uint16, index int32, flags, change uint32) []byte {
	b := []byte{unix.AF_UNSPEC, 0}
	b = binary.NativeEndian.AppendUint16(b, devType)
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	b = binary.NativeEndian.AppendUint32(b, flags)
	return binary.NativeEndian.AppendUint32(b, change)
}

// Rtnexthop is one hop of RTA_MULTIPATH: struct rtnexthop (flags and hops
// 0) followed by its attributes (see Attr).
func Rtnexthop(ifindex uint32, attrs []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(unix.SizeofRtNexthop+len(attrs)))
	b = append(b, 0, 0) // flags, hops
	b = binary.NativeEndian.AppendUint32(b, ifindex)
	return append(b, attrs...)
}

// NexthopGrp is NHA_GROUP's value: a struct nexthop_grp per id, each with
// its weight field 1 (the field holds the weight minus one).
func NexthopGrp(ids ...uint32) []byte {
	var b []byte
	for _, id := range ids {
		b = binary.NativeEndian.AppendUint32(b, id)
		b = append(b, 1, 0, 0, 0) // weight, weight_high, resvd2
	}
	return b
}

// U32 is a 32-bit attribute value.
func U32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// IP is an address attribute value: 4 bytes for IPv4, 16 for IPv6. It
// panics on a malformed address, as tests' literals never are.
func IP(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

// CString is a NUL-terminated string attribute value (IFLA_IFNAME,
// FRA_IIFNAME).
func CString(s string) []byte { return append([]byte(s), 0) }

// Via is RTA_VIA's value, struct rtvia: the gateway's family, then its
// address.
func Via(family uint16, addr string) []byte {
	return append(binary.NativeEndian.AppendUint16(nil, family), IP(addr)...)
}
