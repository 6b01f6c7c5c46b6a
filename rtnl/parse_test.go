package rtnl

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// Flags an `ip route add` request carries: REQUEST|ACK|EXCL|CREATE.
const addFlags = 0x1 | 0x4 | 0x200 | 0x400

// msgBuilder builds a netlink message: header, family header, attributes.
type msgBuilder struct{ b []byte }

func newMsg(typ, flags uint16, seq, portid uint32, family []byte) *msgBuilder {
	b := make([]byte, HeaderLen, 256)
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], portid)
	m := &msgBuilder{append(b, family...)}
	m.pad()
	return m
}

func (m *msgBuilder) pad() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

// attr appends an attribute padded to 4 bytes.
func (m *msgBuilder) attr(typ uint16, val []byte) *msgBuilder {
	m.attrUnpadded(typ, val)
	m.pad()
	return m
}

// attrUnpadded appends an attribute and no padding, so that a last
// attribute can leave nlmsg_len unaligned.
func (m *msgBuilder) attrUnpadded(typ uint16, val []byte) *msgBuilder {
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(4+len(val)))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, val...)
	return m
}

// raw appends bytes as they are, for malformed attributes.
func (m *msgBuilder) raw(b ...byte) *msgBuilder {
	m.b = append(m.b, b...)
	return m
}

func (m *msgBuilder) bytes() []byte {
	binary.NativeEndian.PutUint32(m.b, uint32(len(m.b)))
	return m.b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func ip(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

func cstr(s string) []byte { return append([]byte(s), 0) }

func via(family uint16, addr string) []byte {
	return append(binary.NativeEndian.AppendUint16(nil, family), ip(addr)...)
}

func rtmsg(family, dstLen, srcLen, tos, table, proto, scope, typ uint8) []byte {
	return []byte{family, dstLen, srcLen, tos, table, proto, scope, typ, 0, 0, 0, 0}
}

func fibRuleHdr(family, dstLen, srcLen, tos, table, action uint8) []byte {
	return []byte{family, dstLen, srcLen, tos, table, 0, 0, action, 0, 0, 0, 0}
}

func nhmsg(family, scope, proto uint8) []byte {
	return []byte{family, scope, proto, 0, 0, 0, 0, 0}
}

func ifaddrmsg(family, prefixLen, scope uint8, index uint32) []byte {
	return append([]byte{family, prefixLen, 0, scope}, u32(index)...)
}

func ifinfomsg(index int32, flags, change uint32) []byte {
	b := []byte{0, 0, 1, 0} // AF_UNSPEC, pad, ARPHRD_ETHER
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	b = binary.NativeEndian.AppendUint32(b, flags)
	return binary.NativeEndian.AppendUint32(b, change)
}

func rtnexthop(ifindex uint32, attrs []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(8+len(attrs)))
	b = append(b, 0, 0) // flags, hops
	b = binary.NativeEndian.AppendUint32(b, ifindex)
	return append(b, attrs...)
}

// nla encodes one padded attribute, for nesting.
func nla(typ uint16, val []byte) []byte {
	m := &msgBuilder{}
	m.attr(typ, val)
	return m.b
}

func name(s string) event.Name {
	var n event.Name
	n.Set(s)
	return n
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

type decodeCase struct {
	name string
	msg  []byte
	want event.Event
}

func decodeCases() []decodeCase {
	return []decodeCase{{
		name: "ipv4 route add",
		// ip route add 10.244.3.0/24 via 10.0.0.1 dev if7 proto bird metric 50 table 100
		msg: newMsg(rtmNewRoute, addFlags, 1001, 4242, rtmsg(2, 24, 0, 0, 100, 12, 0, 1)).
			attr(rtaTable, u32(100)).
			attr(rtaDst, ip("10.244.3.0")).
			attr(rtaGateway, ip("10.0.0.1")).
			attr(rtaOif, u32(7)).
			attr(rtaPriority, u32(50)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("10.244.3.0/24"), Gateway: addr("10.0.0.1"), Table: 100, Protocol: 12,
			Type: 1, Priority: 50, Oif: 7, Seq: 1001, Portid: 4242},
	}, {
		name: "rta_table overrides rtm_table",
		msg: newMsg(rtmNewRoute, addFlags, 1, 2, rtmsg(2, 32, 0, 0, 252, 4, 253, 1)).
			attr(rtaDst, ip("192.0.2.9")).
			attr(rtaTable, u32(1000)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("192.0.2.9/32"), Table: 1000, Protocol: 4, Scope: 253, Type: 1, Seq: 1, Portid: 2},
	}, {
		name: "ipv6 route via",
		msg: newMsg(rtmNewRoute, addFlags, 7, 99, rtmsg(10, 64, 0, 0, 254, 3, 0, 1)).
			attr(rtaDst, ip("2001:db8:1::")).
			attr(rtaVia, via(10, "2001:db8::2")).
			attr(rtaOif, u32(3)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 10,
			Dst: pfx("2001:db8:1::/64"), Gateway: addr("2001:db8::2"), Table: 254, Protocol: 3,
			Type: 1, Oif: 3, Seq: 7, Portid: 99},
	}, {
		name: "ipv4 route via ipv6 gateway",
		msg: newMsg(rtmNewRoute, addFlags, 7, 99, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			attr(rtaDst, ip("198.51.100.0")).
			attr(rtaVia, via(10, "fe80::1")).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Gateway: addr("fe80::1"), Table: 254, Protocol: 3,
			Type: 1, Seq: 7, Portid: 99},
	}, {
		name: "replace default route",
		msg: newMsg(rtmNewRoute, 0x1|0x4|0x100|0x400, 8, 99, rtmsg(2, 0, 0, 0, 254, 3, 0, 1)).
			attr(rtaGateway, ip("192.0.2.1")).bytes(),
		want: event.Event{Op: event.OpReplace, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("0.0.0.0/0"), Gateway: addr("192.0.2.1"), Table: 254, Protocol: 3,
			Type: 1, Seq: 8, Portid: 99},
	}, {
		name: "delete ipv6 default blackhole",
		msg: newMsg(rtmDelRoute, 0x1|0x4, 9, 99, rtmsg(10, 0, 0, 0, 254, 4, 0, 6)).
			attr(rtaTable, u32(254)).bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: 10,
			Dst: pfx("::/0"), Table: 254, Protocol: 4, Type: 6, Seq: 9, Portid: 99},
	}, {
		name: "source specific route and tos",
		msg: newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(10, 48, 56, 0x10, 254, 3, 0, 1)).
			attr(rtaDst, ip("2001:db8:2::")).
			attr(rtaSrc, ip("2001:db8:3::")).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 10,
			Dst: pfx("2001:db8:2::/48"), Src: pfx("2001:db8:3::/56"), TOS: 0x10, Table: 254,
			Protocol: 3, Type: 1, Seq: 1, Portid: 1},
	}, {
		name: "route by nexthop id",
		msg: newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			attr(rtaDst, ip("198.51.100.0")).
			attr(rtaNhID, u32(5)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Table: 254, Protocol: 3, Type: 1, NexthopID: 5, Seq: 1, Portid: 1},
	}, {
		name: "multipath takes first hop",
		msg: newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			attr(rtaDst, ip("198.51.100.0")).
			attr(rtaMultipath|0x8000, append(
				rtnexthop(3, nla(rtaGateway, ip("192.0.2.2"))),
				rtnexthop(4, nla(rtaGateway, ip("192.0.2.3")))...)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Gateway: addr("192.0.2.2"), Table: 254, Protocol: 3,
			Type: 1, Oif: 3, Multipath: true, Seq: 1, Portid: 1},
	}, {
		name: "multipath with via, explicit oif wins",
		msg: newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			attr(rtaMultipath, rtnexthop(3, nla(rtaVia, via(10, "fe80::2")))).
			attr(rtaOif, u32(9)).
			attr(rtaDst, ip("198.51.100.0")).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Gateway: addr("fe80::2"), Table: 254, Protocol: 3,
			Type: 1, Oif: 9, Multipath: true, Seq: 1, Portid: 1},
	}, {
		name: "unknown and flagged attributes",
		msg: newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			attr(7, ip("192.0.2.1")).   // RTA_PREFSRC
			attr(12, make([]byte, 16)). // RTA_CACHEINFO
			attr(999, nil).
			attr(rtaDst|0x4000, ip("198.51.100.0")). // NLA_F_NET_BYTEORDER masked off
			attr(rtaPriority, u32(1)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Table: 254, Protocol: 3, Type: 1, Priority: 1, Seq: 1, Portid: 1},
	}, {
		name: "mpls route via mac",
		// AF_MPLS: RTA_DST is a label, RTA_VIA an AF_PACKET address.
		msg: newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(28, 20, 0, 0, 254, 3, 0, 1)).
			attr(rtaDst, []byte{0, 1, 0x41, 0}).
			attr(rtaVia, []byte{17, 0, 2, 0, 0, 0, 0, 1}).
			attr(rtaOif, u32(2)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 28, Table: 254,
			Protocol: 3, Type: 1, Oif: 2, Seq: 1, Portid: 1},
	}, {
		name: "rule from lookup with iif",
		// ip rule add pref 512 from 10.244.1.5/32 iif eth0 lookup 100
		msg: newMsg(rtmNewRule, addFlags, 55, 777, fibRuleHdr(2, 0, 32, 0, 100, 1)).
			attr(fraTable, u32(100)).
			attr(fraPriority, u32(512)).
			attr(fraSrc, ip("10.244.1.5")).
			attr(fraIifname, cstr("eth0")).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRule, Family: 2,
			Src: pfx("10.244.1.5/32"), Table: 100, Priority: 512, IifName: name("eth0"),
			Action: 1, Seq: 55, Portid: 777},
	}, {
		name: "rule to dst with fwmark, oif, goto and protocol",
		msg: newMsg(rtmDelRule, 0x5, 56, 777, fibRuleHdr(10, 32, 0, 0, 0, 2)).
			attr(fraDst, ip("2001:db8::")).
			attr(fraFwmark, u32(0x200)).
			attr(fraFwmask, u32(0xf00)).
			attr(fraOifname, cstr("a-very-long-interface-name")).
			attr(fraGoto, u32(1000)).
			attr(fraProtocol, []byte{186}).bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: 10,
			Dst: pfx("2001:db8::/32"), FwMark: 0x200, FwMask: 0xf00, OifName: name("a-very-long-interface-name"),
			Goto: 1000, Action: 2, Protocol: 186, Seq: 56, Portid: 777},
	}, {
		name: "nexthop",
		// ip nexthop add id 5 via 10.0.0.1 dev if3
		msg: newMsg(rtmNewNexthop, addFlags, 3, 12, nhmsg(2, 0, 3)).
			attr(nhaID, u32(5)).
			attr(nhaGateway, ip("10.0.0.1")).
			attr(nhaOif, u32(3)).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectNexthop, Family: 2,
			Gateway: addr("10.0.0.1"), Protocol: 3, Oif: 3, NexthopID: 5, Seq: 3, Portid: 12},
	}, {
		name: "nexthop group replace",
		msg: newMsg(rtmNewNexthop, 0x1|0x100, 3, 12, nhmsg(0, 0, 3)).
			attr(nhaID, u32(10)).
			attr(nhaGroup, []byte{5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0}).bytes(),
		want: event.Event{Op: event.OpReplace, Object: event.ObjectNexthop, Protocol: 3,
			NexthopID: 10, Multipath: true, Seq: 3, Portid: 12},
	}, {
		name: "nexthop blackhole delete",
		msg: newMsg(rtmDelNexthop, 0, 0, 0, nhmsg(2, 0, 4)).
			attr(nhaID, u32(11)).
			attr(nhaBlackhole, nil).bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectNexthop, Family: 2,
			Protocol: 4, Type: 6, NexthopID: 11},
	}, {
		name: "address",
		msg: newMsg(rtmNewAddr, 0, 4, 5, ifaddrmsg(2, 24, 0, 3)).
			attr(ifaAddress, ip("192.0.2.1")).
			attr(ifaLocal, ip("192.0.2.1")).
			attr(3, cstr("v0")).bytes(), // IFA_LABEL
		want: event.Event{Op: event.OpAdd, Object: event.ObjectAddr, Family: 2,
			Dst: pfx("192.0.2.1/24"), Oif: 3, Seq: 4, Portid: 5},
	}, {
		name: "point to point address prefers local",
		msg: newMsg(rtmDelAddr, 0, 4, 5, ifaddrmsg(2, 32, 253, 8)).
			attr(ifaLocal, ip("192.0.2.1")).
			attr(ifaAddress, ip("192.0.2.254")).bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: 2,
			Dst: pfx("192.0.2.1/32"), Scope: 253, Oif: 8, Seq: 4, Portid: 5},
	}, {
		name: "ipv6 address without local",
		msg: newMsg(rtmNewAddr, 0, 4, 5, ifaddrmsg(10, 64, 0, 3)).
			attr(ifaAddress, ip("2001:db8::1")).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectAddr, Family: 10,
			Dst: pfx("2001:db8::1/64"), Oif: 3, Seq: 4, Portid: 5},
	}, {
		name: "link",
		msg: newMsg(rtmNewLink, 0, 0, 0, ifinfomsg(4, 0x1003, 0)).
			attr(4, u32(1500)). // IFLA_MTU
			attr(iflaIfname, cstr("v0")).bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectLink, Oif: 4, Dev: name("v0")},
	}, {
		name: "link delete",
		msg: newMsg(rtmDelLink, 0, 0, 0, ifinfomsg(5, 0, 0xffffffff)).
			attr(iflaIfname, cstr("v1")).bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectLink, Oif: 5, Dev: name("v1")},
	}}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			h, msg, rest, err := Next(tc.msg)
			if err != nil || len(rest) != 0 || len(msg) != len(tc.msg) {
				t.Fatalf("Next: err %v, msg %d bytes, rest %d bytes", err, len(msg), len(rest))
			}
			var got event.Event
			if err := Decode(h, msg, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tc.want {
				t.Errorf("Decode:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	route := func() *msgBuilder { return newMsg(rtmNewRoute, addFlags, 1, 1, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)) }
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"get route", newMsg(26, 0x301, 1, 1, rtmsg(2, 0, 0, 0, 0, 0, 0, 0)).bytes(), ErrUnknownType},
		{"netlink error", newMsg(2, 0, 1, 1, make([]byte, 20)).bytes(), ErrUnknownType},
		{"short rtmsg", newMsg(rtmNewRoute, 0, 1, 1, make([]byte, 8)).bytes(), ErrTruncated},
		{"short fib_rule_hdr", newMsg(rtmNewRule, 0, 1, 1, make([]byte, 8)).bytes(), ErrTruncated},
		{"short nhmsg", newMsg(rtmNewNexthop, 0, 1, 1, make([]byte, 4)).bytes(), ErrTruncated},
		{"short ifaddrmsg", newMsg(rtmNewAddr, 0, 1, 1, make([]byte, 4)).bytes(), ErrTruncated},
		{"short ifinfomsg", newMsg(rtmNewLink, 0, 1, 1, make([]byte, 12)).bytes(), ErrTruncated},
		{"header only", newMsg(rtmDelRule, 0, 1, 1, nil).bytes(), ErrTruncated},
		{"attr length 0", route().raw(0, 0, 1, 0, 1, 2, 3, 4).bytes(), ErrBadAttr},
		{"attr length 2", route().raw(2, 0, 1, 0).bytes(), ErrBadAttr},
		{"attr past end", route().raw(12, 0, 1, 0, 10, 0, 0, 0).bytes(), ErrBadAttr},
		{"trailing bytes", route().attr(rtaOif, u32(1)).raw(4, 0).bytes(), ErrBadAttr},
		{"short oif", route().attr(rtaOif, []byte{1, 0}).bytes(), ErrBadAttr},
		{"dst of 5 bytes", route().attr(rtaDst, []byte{10, 0, 0, 0, 0}).bytes(), ErrBadAttr},
		{"dst_len past address", newMsg(rtmNewRoute, 0, 1, 1, rtmsg(2, 33, 0, 0, 254, 3, 0, 1)).
			attr(rtaDst, ip("10.0.0.0")).bytes(), ErrBadAttr},
		{"via family mismatch", route().attr(rtaVia, via(2, "2001:db8::1")).bytes(), ErrBadAttr},
		{"via inet6 short", route().attr(rtaVia, via(10, "192.0.2.1")).bytes(), ErrBadAttr},
		{"via without address", route().attr(rtaVia, []byte{2}).bytes(), ErrBadAttr},
		{"multipath hop too long", route().attr(rtaMultipath, []byte{200, 0, 0, 0, 1, 0, 0, 0}).bytes(), ErrBadAttr},
		{"multipath hop too short", route().attr(rtaMultipath, []byte{4, 0, 0, 0}).bytes(), ErrBadAttr},
		{"multipath bad gateway", route().attr(rtaMultipath, rtnexthop(1, nla(rtaGateway, []byte{1, 2}))).bytes(), ErrBadAttr},
		{"rule protocol empty", newMsg(rtmNewRule, 0, 1, 1, fibRuleHdr(2, 0, 0, 0, 0, 1)).
			attr(fraProtocol, nil).bytes(), ErrBadAttr},
		{"nexthop gateway 3 bytes", newMsg(rtmNewNexthop, 0, 1, 1, nhmsg(2, 0, 3)).
			attr(nhaGateway, []byte{1, 2, 3}).bytes(), ErrBadAttr},
		{"link attr past end", newMsg(rtmNewLink, 0, 1, 1, ifinfomsg(1, 0, 0)).raw(40, 0, 3, 0).bytes(), ErrBadAttr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, msg, _, err := Next(tc.msg)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			var ev event.Event
			if err := Decode(h, msg, &ev); err != tc.want {
				t.Errorf("Decode: got %v, want %v", err, tc.want)
			}
		})
	}
}

// A header that claims more than the message holds is truncated, and one
// that claims less bounds the message.
func TestDecodeHeaderLength(t *testing.T) {
	full := decodeCases()[0].msg
	h, msg, _, _ := Next(full)
	var ev event.Event
	if err := Decode(h, msg[:len(msg)-1], &ev); err != ErrTruncated {
		t.Errorf("Decode of a message shorter than nlmsg_len: got %v, want ErrTruncated", err)
	}
	if err := Decode(h, msg[:10], &ev); err != ErrTruncated {
		t.Errorf("Decode of 10 bytes: got %v, want ErrTruncated", err)
	}
	// Trailing garbage past nlmsg_len (a captured request in a larger
	// buffer) is not part of the message.
	long := append(append([]byte(nil), full...), 0xff, 0xff, 0xff)
	ev = event.Event{}
	if err := Decode(h, long, &ev); err != nil || ev != decodeCases()[0].want {
		t.Errorf("Decode with trailing bytes: err %v, event %+v", err, ev)
	}
}

// Every prefix of a valid message, whether cut by the buffer or by a
// header that claims the shorter length, is an error or a consistent
// event, never a panic.
func TestTruncatedPrefixes(t *testing.T) {
	for _, tc := range decodeCases() {
		for i := 0; i < len(tc.msg); i++ {
			cut := tc.msg[:i]
			if _, _, _, err := Next(cut); err != ErrTruncated {
				t.Fatalf("%s: Next of %d/%d bytes: got %v, want ErrTruncated", tc.name, i, len(tc.msg), err)
			}
			if i < HeaderLen {
				continue
			}
			fullHeader, _, _, _ := Next(tc.msg)
			var ev event.Event
			if err := Decode(fullHeader, cut, &ev); err != ErrTruncated {
				t.Fatalf("%s: Decode of %d/%d bytes: got %v, want ErrTruncated", tc.name, i, len(tc.msg), err)
			}

			short := append([]byte(nil), cut...)
			binary.NativeEndian.PutUint32(short, uint32(i))
			h, msg, rest, err := Next(short)
			if err != nil || len(msg) != i || len(rest) != 0 {
				t.Fatalf("%s: Next of relabelled %d bytes: err %v", tc.name, i, err)
			}
			ev = event.Event{}
			switch err := Decode(h, msg, &ev); err {
			case nil:
				if ev.Object != tc.want.Object || ev.Op != tc.want.Op || ev.Family != tc.want.Family {
					t.Fatalf("%s: Decode of %d bytes: inconsistent %+v", tc.name, i, ev)
				}
			case ErrTruncated, ErrBadAttr:
			default:
				t.Fatalf("%s: Decode of %d bytes: unexpected error %v", tc.name, i, err)
			}
		}
	}
}

func TestNext(t *testing.T) {
	cases := []struct {
		name string
		buf  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", make([]byte, 15), ErrTruncated},
		{"length 0", make([]byte, 16), ErrBadLength},
		{"length 15", append(u32(15), make([]byte, 12)...), ErrBadLength},
		{"length past buffer", append(u32(17), make([]byte, 12)...), ErrTruncated},
		{"length 4 GiB", append(u32(0xffffffff), make([]byte, 12)...), ErrTruncated},
	}
	for _, tc := range cases {
		if _, msg, rest, err := Next(tc.buf); err != tc.want || msg != nil || rest != nil {
			t.Errorf("%s: got err %v, msg %v, rest %v; want %v", tc.name, err, msg, rest, tc.want)
		}
	}

	// An unpadded last message ends the buffer.
	m := newMsg(rtmNewLink, 0, 1, 2, ifinfomsg(4, 0, 0)).attrUnpadded(iflaIfname, cstr("v0")).bytes()
	h, msg, rest, err := Next(m)
	if err != nil || h.Len != 39 || len(msg) != 39 || len(rest) != 0 {
		t.Errorf("unpadded message: h %+v, msg %d, rest %d, err %v", h, len(msg), len(rest), err)
	}
}

// Three messages back to back, the first two with unaligned lengths
// padded in the buffer, as the kernel lays out a multipart datagram.
func TestNextBatch(t *testing.T) {
	m1 := newMsg(rtmNewLink, 0, 1, 0, ifinfomsg(4, 0, 0)).attrUnpadded(iflaIfname, cstr("v0")).bytes() // 39
	m2 := newMsg(rtmNewRule, addFlags, 2, 0, fibRuleHdr(2, 0, 0, 0, 0, 1)).
		attr(fraPriority, u32(9)).attrUnpadded(fraIifname, cstr("eth10")).bytes() // 16+12+8+10 = 46
	m3 := decodeCases()[0].msg
	var buf []byte
	for _, m := range [][]byte{m1, m2, m3} {
		buf = append(buf, m...)
		for len(buf)%4 != 0 {
			buf = append(buf, 0)
		}
	}
	wantObj := []event.Object{event.ObjectLink, event.ObjectRule, event.ObjectRoute}
	wantLen := []int{39, 46, len(m3)}
	wantSeq := []uint32{1, 2, 1001}
	rest := buf
	for i := 0; len(rest) > 0; i++ {
		if i == 3 {
			t.Fatalf("more than 3 messages, %d bytes left", len(rest))
		}
		var (
			h   Header
			msg []byte
			err error
		)
		h, msg, rest, err = Next(rest)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(msg) != wantLen[i] || int(h.Len) != wantLen[i] || h.Seq != wantSeq[i] {
			t.Errorf("message %d: len %d, h %+v", i, len(msg), h)
		}
		var ev event.Event
		if err := Decode(h, msg, &ev); err != nil || ev.Object != wantObj[i] {
			t.Errorf("message %d: object %v, err %v", i, ev.Object, err)
		}
		if i == 1 && (ev.IifName != name("eth10") || ev.Priority != 9) {
			t.Errorf("rule: %+v", ev)
		}
	}
}

func TestLinkDown(t *testing.T) {
	cases := []struct {
		name string
		msg  []byte
		want bool
	}{
		{"going down", newMsg(rtmNewLink, 0, 0, 0, ifinfomsg(4, 0x1002, 1)).bytes(), true},
		{"setlink down", newMsg(rtmSetLink, 0, 0, 0, ifinfomsg(4, 0, 1)).bytes(), true},
		{"going up", newMsg(rtmNewLink, 0, 0, 0, ifinfomsg(4, 0x1003, 1)).bytes(), false},
		{"down, unchanged", newMsg(rtmNewLink, 0, 0, 0, ifinfomsg(4, 0, 0)).bytes(), false},
		{"other change", newMsg(rtmNewLink, 0, 0, 0, ifinfomsg(4, 0, 0x100)).bytes(), false},
		{"dellink", newMsg(rtmDelLink, 0, 0, 0, ifinfomsg(4, 0, 1)).bytes(), false},
		{"short", newMsg(rtmNewLink, 0, 0, 0, ifinfomsg(4, 0, 1)).bytes()[:31], false},
	}
	for _, tc := range cases {
		if got := LinkDown(tc.msg); got != tc.want {
			t.Errorf("%s: LinkDown = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	want := map[string]bool{"ipv4 route add": true, "ipv6 route via": true, "multipath takes first hop": true,
		"rule from lookup with iif": true, "nexthop": true}
	for _, tc := range decodeCases() {
		if !want[tc.name] {
			continue
		}
		delete(want, tc.name)
		h, msg, _, err := Next(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		var ev event.Event
		allocs := testing.AllocsPerRun(100, func() {
			ev = event.Event{}
			if _, _, _, err := Next(tc.msg); err != nil {
				t.Fatal(err)
			}
			if err := Decode(h, msg, &ev); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Next+Decode, want 0", tc.name, allocs)
		}
	}
	if len(want) != 0 {
		t.Fatalf("cases not found: %v", want)
	}
	// Rejecting garbage must be free too.
	bad := newMsg(rtmNewRoute, 0, 1, 1, rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).raw(2, 0, 1, 0).bytes()
	h, msg, _, _ := Next(bad)
	if a := testing.AllocsPerRun(100, func() {
		var ev event.Event
		_ = Decode(h, msg, &ev)
	}); a != 0 {
		t.Errorf("%v allocations per failing Decode, want 0", a)
	}
}

func BenchmarkDecodeRoute(b *testing.B) {
	buf := decodeCases()[0].msg
	var ev event.Event
	b.ReportAllocs()
	for b.Loop() {
		h, msg, _, err := Next(buf)
		if err != nil {
			b.Fatal(err)
		}
		ev = event.Event{}
		if err := Decode(h, msg, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
