package rtnl

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/nltest"
	"golang.org/x/sys/unix"
)

// Flags an `ip route add` request carries: REQUEST|ACK|EXCL|CREATE.
const addFlags = 0x1 | 0x4 | 0x200 | 0x400

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
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1001, 4242, nltest.Rtmsg(2, 24, 0, 0, 100, 12, 0, 1)).
			Attr(rtaTable, nltest.U32(100)).
			Attr(rtaDst, nltest.IP("10.244.3.0")).
			Attr(rtaGateway, nltest.IP("10.0.0.1")).
			Attr(rtaOif, nltest.U32(7)).
			Attr(rtaPriority, nltest.U32(50)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("10.244.3.0/24"), Gateway: addr("10.0.0.1"), Table: 100, Protocol: 12,
			Type: 1, Priority: 50, Oif: 7, Seq: 1001, Portid: 4242},
	}, {
		name: "rta_table overrides rtm_table",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 2, nltest.Rtmsg(2, 32, 0, 0, 252, 4, 253, 1)).
			Attr(rtaDst, nltest.IP("192.0.2.9")).
			Attr(rtaTable, nltest.U32(1000)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("192.0.2.9/32"), Table: 1000, Protocol: 4, Scope: 253, Type: 1, Seq: 1, Portid: 2},
	}, {
		name: "ipv6 route via",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 7, 99, nltest.Rtmsg(10, 64, 0, 0, 254, 3, 0, 1)).
			Attr(rtaDst, nltest.IP("2001:db8:1::")).
			Attr(rtaVia, nltest.Via(10, "2001:db8::2")).
			Attr(rtaOif, nltest.U32(3)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 10,
			Dst: pfx("2001:db8:1::/64"), Gateway: addr("2001:db8::2"), Table: 254, Protocol: 3,
			Type: 1, Oif: 3, Seq: 7, Portid: 99},
	}, {
		name: "ipv4 route via ipv6 gateway",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 7, 99, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			Attr(rtaDst, nltest.IP("198.51.100.0")).
			Attr(rtaVia, nltest.Via(10, "fe80::1")).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Gateway: addr("fe80::1"), Table: 254, Protocol: 3,
			Type: 1, Seq: 7, Portid: 99},
	}, {
		name: "replace default route",
		msg: nltest.NewMsg(rtmNewRoute, 0x1|0x4|0x100|0x400, 8, 99, nltest.Rtmsg(2, 0, 0, 0, 254, 3, 0, 1)).
			Attr(rtaGateway, nltest.IP("192.0.2.1")).Bytes(),
		want: event.Event{Op: event.OpReplace, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("0.0.0.0/0"), Gateway: addr("192.0.2.1"), Table: 254, Protocol: 3,
			Type: 1, Seq: 8, Portid: 99},
	}, {
		name: "delete ipv6 default blackhole",
		msg: nltest.NewMsg(rtmDelRoute, 0x1|0x4, 9, 99, nltest.Rtmsg(10, 0, 0, 0, 254, 4, 0, 6)).
			Attr(rtaTable, nltest.U32(254)).Bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: 10,
			Dst: pfx("::/0"), Table: 254, Protocol: 4, Type: 6, Seq: 9, Portid: 99},
	}, {
		name: "source specific route and tos",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(10, 48, 56, 0x10, 254, 3, 0, 1)).
			Attr(rtaDst, nltest.IP("2001:db8:2::")).
			Attr(rtaSrc, nltest.IP("2001:db8:3::")).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 10,
			Dst: pfx("2001:db8:2::/48"), Src: pfx("2001:db8:3::/56"), TOS: 0x10, Table: 254,
			Protocol: 3, Type: 1, Seq: 1, Portid: 1},
	}, {
		name: "route by nexthop id",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			Attr(rtaDst, nltest.IP("198.51.100.0")).
			Attr(rtaNhID, nltest.U32(5)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Table: 254, Protocol: 3, Type: 1, NexthopID: 5, Seq: 1, Portid: 1},
	}, {
		name: "multipath takes first hop",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			Attr(rtaDst, nltest.IP("198.51.100.0")).
			Attr(rtaMultipath|0x8000, append(
				nltest.Rtnexthop(3, nltest.Attr(rtaGateway, nltest.IP("192.0.2.2"))),
				nltest.Rtnexthop(4, nltest.Attr(rtaGateway, nltest.IP("192.0.2.3")))...)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Gateway: addr("192.0.2.2"), Table: 254, Protocol: 3,
			Type: 1, Oif: 3, Multipath: true, Seq: 1, Portid: 1},
	}, {
		name: "multipath with via, explicit oif wins",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			Attr(rtaMultipath, nltest.Rtnexthop(3, nltest.Attr(rtaVia, nltest.Via(10, "fe80::2")))).
			Attr(rtaOif, nltest.U32(9)).
			Attr(rtaDst, nltest.IP("198.51.100.0")).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Gateway: addr("fe80::2"), Table: 254, Protocol: 3,
			Type: 1, Oif: 9, Multipath: true, Seq: 1, Portid: 1},
	}, {
		name: "unknown and flagged attributes",
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).
			Attr(7, nltest.IP("192.0.2.1")). // RTA_PREFSRC
			Attr(12, make([]byte, 16)).      // RTA_CACHEINFO
			Attr(999, nil).
			Attr(rtaDst|0x4000, nltest.IP("198.51.100.0")). // NLA_F_NET_BYTEORDER masked off
			Attr(rtaPriority, nltest.U32(1)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Dst: pfx("198.51.100.0/24"), Table: 254, Protocol: 3, Type: 1, Priority: 1, Seq: 1, Portid: 1},
	}, {
		name: "mpls route via mac",
		// AF_MPLS: RTA_DST is a label, RTA_VIA an AF_PACKET address.
		msg: nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(28, 20, 0, 0, 254, 3, 0, 1)).
			Attr(rtaDst, []byte{0, 1, 0x41, 0}).
			Attr(rtaVia, []byte{17, 0, 2, 0, 0, 0, 0, 1}).
			Attr(rtaOif, nltest.U32(2)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: 28, Table: 254,
			Protocol: 3, Type: 1, Oif: 2, Seq: 1, Portid: 1},
	}, {
		name: "rule from lookup with iif",
		// ip rule add pref 512 from 10.244.1.5/32 iif eth0 lookup 100
		msg: nltest.NewMsg(rtmNewRule, addFlags, 55, 777, nltest.FibRuleHdr(2, 0, 32, 0, 100, 1)).
			Attr(fraTable, nltest.U32(100)).
			Attr(fraPriority, nltest.U32(512)).
			Attr(fraSrc, nltest.IP("10.244.1.5")).
			Attr(fraIifname, nltest.CString("eth0")).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectRule, Family: 2,
			Src: pfx("10.244.1.5/32"), Table: 100, Priority: 512, IifName: name("eth0"),
			Action: 1, Seq: 55, Portid: 777},
	}, {
		name: "rule to dst with fwmark, oif, goto and protocol",
		msg: nltest.NewMsg(rtmDelRule, 0x5, 56, 777, nltest.FibRuleHdr(10, 32, 0, 0, 0, 2)).
			Attr(fraDst, nltest.IP("2001:db8::")).
			Attr(fraFwmark, nltest.U32(0x200)).
			Attr(fraFwmask, nltest.U32(0xf00)).
			Attr(fraOifname, nltest.CString("a-very-long-interface-name")).
			Attr(fraGoto, nltest.U32(1000)).
			Attr(fraProtocol, []byte{186}).Bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectRule, Family: 10,
			Dst: pfx("2001:db8::/32"), FwMark: 0x200, FwMask: 0xf00, OifName: name("a-very-long-interface-name"),
			Goto: 1000, Action: 2, Protocol: 186, Seq: 56, Portid: 777},
	}, {
		name: "nexthop",
		// ip nexthop add id 5 via 10.0.0.1 dev if3
		msg: nltest.NewMsg(rtmNewNexthop, addFlags, 3, 12, nltest.Nhmsg(2, 0, 3)).
			Attr(nhaID, nltest.U32(5)).
			Attr(nhaGateway, nltest.IP("10.0.0.1")).
			Attr(nhaOif, nltest.U32(3)).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectNexthop, Family: 2,
			Gateway: addr("10.0.0.1"), Protocol: 3, Oif: 3, NexthopID: 5, Seq: 3, Portid: 12},
	}, {
		name: "nexthop group replace",
		msg: nltest.NewMsg(rtmNewNexthop, 0x1|0x100, 3, 12, nltest.Nhmsg(0, 0, 3)).
			Attr(nhaID, nltest.U32(10)).
			Attr(nhaGroup, []byte{5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0}).Bytes(),
		want: event.Event{Op: event.OpReplace, Object: event.ObjectNexthop, Protocol: 3,
			NexthopID: 10, Multipath: true, Seq: 3, Portid: 12},
	}, {
		name: "nexthop blackhole delete",
		msg: nltest.NewMsg(rtmDelNexthop, 0, 0, 0, nltest.Nhmsg(2, 0, 4)).
			Attr(nhaID, nltest.U32(11)).
			Attr(nhaBlackhole, nil).Bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectNexthop, Family: 2,
			Protocol: 4, Type: 6, NexthopID: 11},
	}, {
		name: "address",
		msg: nltest.NewMsg(rtmNewAddr, 0, 4, 5, nltest.Ifaddrmsg(2, 24, 0, 3)).
			Attr(ifaAddress, nltest.IP("192.0.2.1")).
			Attr(ifaLocal, nltest.IP("192.0.2.1")).
			Attr(3, nltest.CString("v0")).Bytes(), // IFA_LABEL
		want: event.Event{Op: event.OpAdd, Object: event.ObjectAddr, Family: 2,
			Dst: pfx("192.0.2.1/24"), Oif: 3, Seq: 4, Portid: 5},
	}, {
		name: "point to point address prefers local",
		msg: nltest.NewMsg(rtmDelAddr, 0, 4, 5, nltest.Ifaddrmsg(2, 32, 253, 8)).
			Attr(ifaLocal, nltest.IP("192.0.2.1")).
			Attr(ifaAddress, nltest.IP("192.0.2.254")).Bytes(),
		want: event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: 2,
			Dst: pfx("192.0.2.1/32"), Scope: 253, Oif: 8, Seq: 4, Portid: 5},
	}, {
		name: "ipv6 address without local",
		msg: nltest.NewMsg(rtmNewAddr, 0, 4, 5, nltest.Ifaddrmsg(10, 64, 0, 3)).
			Attr(ifaAddress, nltest.IP("2001:db8::1")).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectAddr, Family: 10,
			Dst: pfx("2001:db8::1/64"), Oif: 3, Seq: 4, Portid: 5},
	}, {
		name: "link",
		msg: nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0x1003, 0)).
			Attr(4, nltest.U32(1500)). // IFLA_MTU
			Attr(iflaIfname, nltest.CString("v0")).Bytes(),
		want: event.Event{Op: event.OpAdd, Object: event.ObjectLink, Oif: 4, Dev: name("v0")},
	}, {
		name: "link delete",
		msg: nltest.NewMsg(rtmDelLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 5, 0, 0xffffffff)).
			Attr(iflaIfname, nltest.CString("v1")).Bytes(),
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
	route := func() *nltest.Msg {
		return nltest.NewMsg(rtmNewRoute, addFlags, 1, 1, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1))
	}
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"get route", nltest.NewMsg(26, 0x301, 1, 1, nltest.Rtmsg(2, 0, 0, 0, 0, 0, 0, 0)).Bytes(), ErrUnknownType},
		{"netlink error", nltest.NewMsg(2, 0, 1, 1, make([]byte, 20)).Bytes(), ErrUnknownType},
		{"short rtmsg", nltest.NewMsg(rtmNewRoute, 0, 1, 1, make([]byte, 8)).Bytes(), ErrTruncated},
		{"short fib_rule_hdr", nltest.NewMsg(rtmNewRule, 0, 1, 1, make([]byte, 8)).Bytes(), ErrTruncated},
		{"short nhmsg", nltest.NewMsg(rtmNewNexthop, 0, 1, 1, make([]byte, 4)).Bytes(), ErrTruncated},
		{"short ifaddrmsg", nltest.NewMsg(rtmNewAddr, 0, 1, 1, make([]byte, 4)).Bytes(), ErrTruncated},
		{"short ifinfomsg", nltest.NewMsg(rtmNewLink, 0, 1, 1, make([]byte, 12)).Bytes(), ErrTruncated},
		{"header only", nltest.NewMsg(rtmDelRule, 0, 1, 1, nil).Bytes(), ErrTruncated},
		{"attr length 0", route().Raw(0, 0, 1, 0, 1, 2, 3, 4).Bytes(), ErrBadAttr},
		{"attr length 2", route().Raw(2, 0, 1, 0).Bytes(), ErrBadAttr},
		{"attr past end", route().Raw(12, 0, 1, 0, 10, 0, 0, 0).Bytes(), ErrBadAttr},
		{"trailing bytes", route().Attr(rtaOif, nltest.U32(1)).Raw(4, 0).Bytes(), ErrBadAttr},
		{"short oif", route().Attr(rtaOif, []byte{1, 0}).Bytes(), ErrBadAttr},
		{"dst of 5 bytes", route().Attr(rtaDst, []byte{10, 0, 0, 0, 0}).Bytes(), ErrBadAttr},
		{"dst_len past address", nltest.NewMsg(rtmNewRoute, 0, 1, 1, nltest.Rtmsg(2, 33, 0, 0, 254, 3, 0, 1)).
			Attr(rtaDst, nltest.IP("10.0.0.0")).Bytes(), ErrBadAttr},
		{"via family mismatch", route().Attr(rtaVia, nltest.Via(2, "2001:db8::1")).Bytes(), ErrBadAttr},
		{"via inet6 short", route().Attr(rtaVia, nltest.Via(10, "192.0.2.1")).Bytes(), ErrBadAttr},
		{"via without address", route().Attr(rtaVia, []byte{2}).Bytes(), ErrBadAttr},
		{"multipath hop too long", route().Attr(rtaMultipath, []byte{200, 0, 0, 0, 1, 0, 0, 0}).Bytes(), ErrBadAttr},
		{"multipath hop too short", route().Attr(rtaMultipath, []byte{4, 0, 0, 0}).Bytes(), ErrBadAttr},
		{"multipath bad gateway", route().Attr(rtaMultipath, nltest.Rtnexthop(1, nltest.Attr(rtaGateway, []byte{1, 2}))).Bytes(), ErrBadAttr},
		{"rule protocol empty", nltest.NewMsg(rtmNewRule, 0, 1, 1, nltest.FibRuleHdr(2, 0, 0, 0, 0, 1)).
			Attr(fraProtocol, nil).Bytes(), ErrBadAttr},
		{"nexthop gateway 3 bytes", nltest.NewMsg(rtmNewNexthop, 0, 1, 1, nltest.Nhmsg(2, 0, 3)).
			Attr(nhaGateway, []byte{1, 2, 3}).Bytes(), ErrBadAttr},
		{"link attr past end", nltest.NewMsg(rtmNewLink, 0, 1, 1, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 1, 0, 0)).Raw(40, 0, 3, 0).Bytes(), ErrBadAttr},
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
		{"length 15", append(nltest.U32(15), make([]byte, 12)...), ErrBadLength},
		{"length past buffer", append(nltest.U32(17), make([]byte, 12)...), ErrTruncated},
		{"length 4 GiB", append(nltest.U32(0xffffffff), make([]byte, 12)...), ErrTruncated},
	}
	for _, tc := range cases {
		if _, msg, rest, err := Next(tc.buf); err != tc.want || msg != nil || rest != nil {
			t.Errorf("%s: got err %v, msg %v, rest %v; want %v", tc.name, err, msg, rest, tc.want)
		}
	}

	// An unpadded last message ends the buffer.
	m := nltest.NewMsg(rtmNewLink, 0, 1, 2, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 0)).AttrUnpadded(iflaIfname, nltest.CString("v0")).Bytes()
	h, msg, rest, err := Next(m)
	if err != nil || h.Len != 39 || len(msg) != 39 || len(rest) != 0 {
		t.Errorf("unpadded message: h %+v, msg %d, rest %d, err %v", h, len(msg), len(rest), err)
	}
}

// Three messages back to back, the first two with unaligned lengths
// padded in the buffer, as the kernel lays out a multipart datagram.
func TestNextBatch(t *testing.T) {
	m1 := nltest.NewMsg(rtmNewLink, 0, 1, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 0)).AttrUnpadded(iflaIfname, nltest.CString("v0")).Bytes() // 39
	m2 := nltest.NewMsg(rtmNewRule, addFlags, 2, 0, nltest.FibRuleHdr(2, 0, 0, 0, 0, 1)).
		Attr(fraPriority, nltest.U32(9)).AttrUnpadded(fraIifname, nltest.CString("eth10")).Bytes() // 16+12+8+10 = 46
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
		{"going down", nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0x1002, 1)).Bytes(), true},
		{"setlink down", nltest.NewMsg(rtmSetLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 1)).Bytes(), true},
		{"going up", nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0x1003, 1)).Bytes(), false},
		{"down, unchanged", nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 0)).Bytes(), false},
		{"other change", nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 0x100)).Bytes(), false},
		{"dellink", nltest.NewMsg(rtmDelLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 1)).Bytes(), false},
		{"short", nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(unix.ARPHRD_ETHER, 4, 0, 1)).Bytes()[:31], false},
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
	bad := nltest.NewMsg(rtmNewRoute, 0, 1, 1, nltest.Rtmsg(2, 24, 0, 0, 254, 3, 0, 1)).Raw(2, 0, 1, 0).Bytes()
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
