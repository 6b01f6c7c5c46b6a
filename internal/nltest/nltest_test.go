package nltest

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// request serializes a message with vishvananda/netlink, an independent
// encoder, to compare ours with.
func request(typ, flags uint16, seq, portid uint32, data ...nl.NetlinkRequestData) []byte {
	req := &nl.NetlinkRequest{NlMsghdr: unix.NlMsghdr{Type: typ, Flags: flags, Seq: seq, Pid: portid}}
	for _, d := range data {
		req.AddData(d)
	}
	return req.Serialize()
}

func TestMatchesVishvananda(t *testing.T) {
	hops := nl.NewRtAttr(unix.RTA_MULTIPATH, nil)
	hops.AddChild(&nl.RtNexthop{RtNexthop: unix.RtNexthop{Ifindex: 3},
		Children: []nl.NetlinkRequestData{nl.NewRtAttr(unix.RTA_GATEWAY, IP("192.0.2.2"))}})
	hops.AddChild(&nl.RtNexthop{RtNexthop: unix.RtNexthop{Ifindex: 4},
		Children: []nl.NetlinkRequestData{nl.NewRtAttr(unix.RTA_VIA, Via(unix.AF_INET6, "fe80::2"))}})

	cases := []struct {
		name      string
		got, want []byte
	}{{
		name: "route with unaligned values and multipath",
		got: NewMsg(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_CREATE, 7, 4242,
			Rtmsg(unix.AF_INET, 24, 8, 0x10, 254, unix.RTPROT_STATIC, unix.RT_SCOPE_LINK, unix.RTN_UNICAST)).
			Attr(unix.RTA_DST, IP("198.51.100.0")).
			Attr(unix.RTA_PREF, []byte{1}).
			Attr(unix.RTA_OIF, U32(9)).
			Attr(unix.RTA_MULTIPATH, append(
				Rtnexthop(3, Attr(unix.RTA_GATEWAY, IP("192.0.2.2"))),
				Rtnexthop(4, Attr(unix.RTA_VIA, Via(unix.AF_INET6, "fe80::2")))...)).Bytes(),
		want: request(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_CREATE, 7, 4242,
			&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET, Dst_len: 24, Src_len: 8, Tos: 0x10, Table: 254,
				Protocol: unix.RTPROT_STATIC, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST}},
			nl.NewRtAttr(unix.RTA_DST, IP("198.51.100.0")),
			nl.NewRtAttr(unix.RTA_PREF, []byte{1}),
			nl.NewRtAttr(unix.RTA_OIF, U32(9)),
			hops),
	}, {
		// A rule's header has the layout of rtmsg, action where type is.
		name: "rule",
		got: NewMsg(unix.RTM_DELRULE, unix.NLM_F_REQUEST, 8, 1,
			FibRuleHdr(unix.AF_INET6, 0, 64, 0, 100, unix.FR_ACT_TO_TBL)).
			Attr(unix.FRA_SRC, IP("2001:db8::")).
			Attr(unix.FRA_IIFNAME, CString("eth0")).Bytes(),
		want: request(unix.RTM_DELRULE, unix.NLM_F_REQUEST, 8, 1,
			&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET6, Src_len: 64, Table: 100, Type: unix.FR_ACT_TO_TBL}},
			nl.NewRtAttr(unix.FRA_SRC, IP("2001:db8::")),
			nl.NewRtAttr(unix.FRA_IIFNAME, []byte("eth0\x00"))),
	}, {
		name: "address",
		got: NewMsg(unix.RTM_DELADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 9, 0,
			Ifaddrmsg(unix.AF_INET, 24, unix.RT_SCOPE_HOST, 0x01020304)).
			Attr(unix.IFA_LOCAL, IP("192.0.2.1")).Bytes(),
		want: request(unix.RTM_DELADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 9, 0,
			&nl.IfAddrmsg{IfAddrmsg: unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: 24,
				Scope: unix.RT_SCOPE_HOST, Index: 0x01020304}},
			nl.NewRtAttr(unix.IFA_LOCAL, IP("192.0.2.1"))),
	}, {
		name: "link",
		got: NewMsg(unix.RTM_NEWLINK, 0, 0, 0, Ifinfomsg(unix.ARPHRD_ETHER, 5, unix.IFF_UP, 0xffffffff)).
			Attr(unix.IFLA_IFNAME, CString("v0")).Bytes(),
		want: request(unix.RTM_NEWLINK, 0, 0, 0,
			&nl.IfInfomsg{IfInfomsg: unix.IfInfomsg{Family: unix.AF_UNSPEC, Type: unix.ARPHRD_ETHER, Index: 5,
				Flags: unix.IFF_UP, Change: 0xffffffff}},
			nl.NewRtAttr(unix.IFLA_IFNAME, []byte("v0\x00"))),
	}}
	for _, tc := range cases {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, tc.got, tc.want)
		}
	}
}

// The struct layouts no reference encoder covers here, checked against
// the kernel's sizes and field offsets.
func TestHeaders(t *testing.T) {
	nh := Nhmsg(unix.AF_INET6, unix.RT_SCOPE_LINK, unix.RTPROT_STATIC)
	if want := []byte{unix.AF_INET6, unix.RT_SCOPE_LINK, unix.RTPROT_STATIC, 0, 0, 0, 0, 0}; !bytes.Equal(nh, want) {
		t.Errorf("Nhmsg = %x, want %x", nh, want)
	}
	grp := NexthopGrp(7, 0x01020304)
	if len(grp) != 16 || binary.NativeEndian.Uint32(grp) != 7 || grp[4] != 1 ||
		binary.NativeEndian.Uint32(grp[8:]) != 0x01020304 || grp[12] != 1 {
		t.Errorf("NexthopGrp(7, 0x01020304) = %x", grp)
	}
	if h := Rtmsg(1, 2, 3, 4, 5, 6, 7, 8); len(h) != unix.SizeofRtMsg {
		t.Errorf("Rtmsg is %d bytes, want %d", len(h), unix.SizeofRtMsg)
	}
	if h := Ifaddrmsg(1, 2, 3, 4); len(h) != unix.SizeofIfAddrmsg {
		t.Errorf("Ifaddrmsg is %d bytes, want %d", len(h), unix.SizeofIfAddrmsg)
	}
	if h := Ifinfomsg(1, 2, 3, 4); len(h) != unix.SizeofIfInfomsg {
		t.Errorf("Ifinfomsg is %d bytes, want %d", len(h), unix.SizeofIfInfomsg)
	}
}

// AttrUnpadded and Raw leave the message where they stop, BytesWithLen
// writes any nlmsg_len, and what Bytes returned is not changed by later
// appends.
func TestUnalignedAndLength(t *testing.T) {
	m := NewMsg(unix.RTM_NEWLINK, 0, 1, 2, []byte{1, 2, 3}) // header padded to 20
	if m.Len() != 20 {
		t.Fatalf("Len after a 3-byte family header = %d, want 20", m.Len())
	}
	m.AttrUnpadded(unix.IFLA_IFNAME, CString("v0")) // 4 + 3 bytes
	first := m.Bytes()
	if len(first) != 27 || binary.NativeEndian.Uint32(first) != 27 ||
		binary.NativeEndian.Uint16(first[20:]) != 7 || binary.NativeEndian.Uint16(first[22:]) != unix.IFLA_IFNAME {
		t.Fatalf("unpadded attribute: %x", first)
	}
	m.Raw(0xff).UnknownAttrs(2, 8)
	if m.Len() != 27+1+16 {
		t.Fatalf("Len after Raw and UnknownAttrs = %d, want 44", m.Len())
	}
	if len(first) != 27 || binary.NativeEndian.Uint32(first) != 27 {
		t.Errorf("later appends changed what Bytes returned: %x", first)
	}
	claimed := m.BytesWithLen(1000)
	if len(claimed) != 44 || binary.NativeEndian.Uint32(claimed) != 1000 {
		t.Errorf("BytesWithLen(1000) = %x", claimed)
	}
	if a := binary.NativeEndian.Uint16(claimed[28:]); a != 8 {
		t.Errorf("unknown attribute length %d, want 8", a)
	}
	if a := binary.NativeEndian.Uint16(claimed[30:]); a != 0x3ff0 {
		t.Errorf("unknown attribute type %#x, want 0x3ff0", a)
	}
}
