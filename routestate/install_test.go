package routestate

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/nltest"
	"github.com/routetrace/routetrace/rtnl"
)

const (
	notified = unix.NLM_F_MULTI // a dump answer's flags
	request  = unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_EXCL
	// rtnhFDead|rtnhFLinkdown|rtnhFOnlink: what the kernel says of a hop
	// through a link that is down.
	hopFlags = 0x1 | 0x10 | rtnhFOnlink
)

// withFlags sets the u32 flags field at off of a family header.
func withFlags(hdr []byte, off int, flags uint32) []byte {
	ne.PutUint32(hdr[off:], flags)
	return hdr
}

func hop(ifindex uint32, flags, weightMinusOne uint8, gw string) []byte {
	b := nltest.Rtnexthop(ifindex, nltest.Attr(rtaGateway, nltest.IP(gw)))
	b[2], b[3] = flags, weightMinusOne
	return b
}

func TestRequestFrom(t *testing.T) {
	metrics := append(nltest.Attr(unix.RTAX_MTU, nltest.U32(1400)), nltest.Attr(unix.RTAX_ADVMSS, nltest.U32(1360))...)
	encap := nltest.Attr(1, nltest.U32(0x12345)) // an MPLS label stack, kept as bytes
	rtm := func(flags uint32) []byte {
		return withFlags(nltest.Rtmsg(unix.AF_INET, 24, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, 0, unix.RTN_UNICAST), 8, flags)
	}
	cases := []struct {
		name      string
		msg, want []byte
	}{{
		name: "route: every attribute kept but the kernel's statistics, flags the kernel sets dropped",
		msg: nltest.NewMsg(unix.RTM_NEWROUTE, notified, 9, 4242, rtm(hopFlags|unix.RTM_F_OFFLOAD)).
			Attr(unix.RTA_TABLE, nltest.U32(unix.RT_TABLE_MAIN)).Attr(unix.RTA_DST, nltest.IP("198.51.100.0")).
			Attr(unix.RTA_PREFSRC, nltest.IP("192.0.2.1")).Attr(unix.RTA_METRICS, metrics).
			Attr(rtaCacheinfo, make([]byte, 32)).Attr(unix.RTA_ENCAP_TYPE, []byte{1, 0}).Attr(unix.RTA_ENCAP, encap).
			Attr(unix.RTA_MULTIPATH, append(hop(3, hopFlags, 2, "192.0.2.2"), hop(4, 0, 6, "192.0.2.3")...)).Bytes(),
		want: nltest.NewMsg(unix.RTM_NEWROUTE, request, 7, 0, rtm(rtnhFOnlink)).
			Attr(unix.RTA_TABLE, nltest.U32(unix.RT_TABLE_MAIN)).Attr(unix.RTA_DST, nltest.IP("198.51.100.0")).
			Attr(unix.RTA_PREFSRC, nltest.IP("192.0.2.1")).Attr(unix.RTA_METRICS, metrics).
			Attr(unix.RTA_ENCAP_TYPE, []byte{1, 0}).Attr(unix.RTA_ENCAP, encap).
			Attr(unix.RTA_MULTIPATH, append(hop(3, rtnhFOnlink, 2, "192.0.2.2"), hop(4, 0, 6, "192.0.2.3")...)).Bytes(),
	}, {
		name: "route with a nexthop id: the hops the kernel describes for old readers dropped",
		msg: nltest.NewMsg(unix.RTM_NEWROUTE, 0, 0, 0, rtm(0)).
			Attr(unix.RTA_DST, nltest.IP("203.0.113.0")).Attr(rtaNhID, nltest.U32(10)).
			Attr(unix.RTA_OIF, nltest.U32(3)).Attr(unix.RTA_GATEWAY, nltest.IP("192.0.2.5")).Bytes(),
		want: nltest.NewMsg(unix.RTM_NEWROUTE, request, 7, 0, rtm(0)).
			Attr(unix.RTA_DST, nltest.IP("203.0.113.0")).Attr(rtaNhID, nltest.U32(10)).Bytes(),
	}, {
		name: "rule: the flags the kernel computes dropped, the invert flag kept",
		msg: nltest.NewMsg(unix.RTM_NEWRULE, 0, 0, 0, withFlags(nltest.FibRuleHdr(unix.AF_INET, 0, 16, 0, 100, 1), 8, 0x2|fibRuleUnresolved|fibRuleIifDetached)).
			Attr(unix.FRA_PRIORITY, nltest.U32(100)).Attr(unix.FRA_SRC, nltest.IP("10.244.0.0")).
			Attr(unix.FRA_IIFNAME, nltest.CString("v0")).Attr(unix.FRA_SUPPRESS_PREFIXLEN, nltest.U32(0xffffffff)).Bytes(),
		want: nltest.NewMsg(unix.RTM_NEWRULE, request, 7, 0, withFlags(nltest.FibRuleHdr(unix.AF_INET, 0, 16, 0, 100, 1), 8, 0x2)).
			Attr(unix.FRA_PRIORITY, nltest.U32(100)).Attr(unix.FRA_SRC, nltest.IP("10.244.0.0")).
			Attr(unix.FRA_IIFNAME, nltest.CString("v0")).Attr(unix.FRA_SUPPRESS_PREFIXLEN, nltest.U32(0xffffffff)).Bytes(),
	}, {
		name: "nexthop: only what a request may carry, no scope",
		msg: nltest.NewMsg(unix.RTM_NEWNEXTHOP, 0, 0, 0, withFlags(nltest.Nhmsg(unix.AF_INET, unix.RT_SCOPE_LINK, unix.RTPROT_STATIC), 4, hopFlags)).
			Attr(1, nltest.U32(10)).Attr(5, nltest.U32(3)).Attr(6, nltest.IP("192.0.2.5")).Attr(14, nltest.U32(0)).Bytes(),
		want: nltest.NewMsg(unix.RTM_NEWNEXTHOP, request, 7, 0, withFlags(nltest.Nhmsg(unix.AF_INET, 0, unix.RTPROT_STATIC), 4, rtnhFOnlink)).
			Attr(1, nltest.U32(10)).Attr(5, nltest.U32(3)).Attr(6, nltest.IP("192.0.2.5")).Bytes(),
	}}
	for _, c := range cases {
		got, err := requestFrom(c.msg, 7)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s:\ngot  % x\nwant % x", c.name, got, c.want)
		}
	}
}

func TestRequestFromRejects(t *testing.T) {
	for name, msg := range map[string][]byte{
		"an address":            nltest.NewMsg(unix.RTM_NEWADDR, 0, 0, 0, nltest.Ifaddrmsg(unix.AF_INET, 24, 0, 3)).Bytes(),
		"a truncated header":    nltest.NewMsg(unix.RTM_NEWROUTE, 0, 0, 0, []byte{2, 24}).Bytes(),
		"an attribute too long": nltest.NewMsg(unix.RTM_NEWROUTE, 0, 0, 0, nltest.Rtmsg(2, 24, 0, 0, 254, 4, 0, 1)).Raw(0xff, 0, 1, 0).Bytes(),
	} {
		if _, err := requestFrom(msg, 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRefusal(t *testing.T) {
	einval := -int32(unix.EINVAL)
	body := append(nltest.U32(uint32(einval)), make([]byte, 16)...) // error, the request's header (capped)
	msg := nltest.NewMsg(unix.NLMSG_ERROR, unix.NLM_F_ACK_TLVS|unix.NLM_F_CAPPED, 3, 0, body).
		Attr(unix.NLMSGERR_ATTR_MSG, nltest.CString("Nexthop id does not exist")).Attr(unix.NLMSGERR_ATTR_OFFS, nltest.U32(40)).Bytes()
	h, m, _, err := rtnl.Next(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := refusal(h, m, unix.EINVAL)
	if got.Error() != "invalid argument (Nexthop id does not exist)" || !errors.Is(got, unix.EINVAL) {
		t.Errorf("got %q (errno %v), want the errno and the kernel's message", got, errors.Is(got, unix.EINVAL))
	}
	h.Flags = 0 // no extended ack
	if got := refusal(h, m, unix.EINVAL); got.Error() != "invalid argument" {
		t.Errorf("without TLVs: %q", got)
	}
}
