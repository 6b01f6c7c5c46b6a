package rtnl

import (
	"bytes"
	"errors"
	"testing"

	"github.com/routetrace/routetrace/internal/nltest"
)

func TestParseLink(t *testing.T) {
	linkinfo := func(kind string) []byte { return nltest.Attr(iflaInfoKind, nltest.CString(kind)) }
	for _, tc := range []struct {
		name string
		msg  []byte
		want LinkMsg
		err  error
	}{{
		name: "veth in a bridge",
		msg: nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(1, 7, 1, 0)).
			Attr(iflaIfname, nltest.CString("cali1234abcd")).
			Attr(iflaMaster, nltest.U32(3)).
			Attr(iflaLinkinfo, append(linkinfo("veth"), nltest.Attr(2, []byte{1, 2, 3, 4})...)).Bytes(),
		want: LinkMsg{Index: 7, Name: []byte("cali1234abcd"), Kind: []byte("veth"), Master: 3},
	}, {
		name: "physical device, deleted",
		msg: nltest.NewMsg(rtmDelLink, 0, 0, 0, nltest.Ifinfomsg(1, 2, 0, 0)).
			Attr(iflaIfname, nltest.CString("eth0")).Bytes(),
		want: LinkMsg{Deleted: true, Index: 2, Name: []byte("eth0")},
	}, {
		name: "bridge port notification",
		msg: nltest.NewMsg(rtmDelLink, 0, 0, 0, append([]byte{afBridge}, nltest.Ifinfomsg(1, 9, 0, 0)[1:]...)).
			Attr(iflaIfname, nltest.CString("v1")).
			Attr(iflaMaster, nltest.U32(4)).Bytes(),
		want: LinkMsg{Deleted: true, Family: afBridge, Index: 9, Name: []byte("v1"), Master: 4},
	}, {
		name: "unterminated name, unpadded last attribute",
		msg: nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(1, 5, 0, 0)).
			AttrUnpadded(iflaIfname, []byte("abc")).Bytes(),
		want: LinkMsg{Index: 5, Name: []byte("abc")},
	}, {
		name: "short master",
		msg: nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(1, 5, 0, 0)).
			Attr(iflaMaster, []byte{1, 2}).Bytes(),
		err: ErrBadAttr,
	}, {
		name: "bad nested attribute",
		msg: nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(1, 5, 0, 0)).
			Attr(iflaLinkinfo, []byte{9, 0, 1, 0}).Bytes(),
		err: ErrBadAttr,
	}, {
		name: "truncated ifinfomsg",
		msg:  nltest.NewMsg(rtmNewLink, 0, 0, 0, []byte{0, 0, 0, 0}).Bytes(),
		err:  ErrTruncated,
	}, {
		name: "a route",
		msg:  nltest.NewMsg(rtmNewRoute, 0, 0, 0, nltest.Rtmsg(2, 0, 0, 0, 254, 0, 0, 1)).Bytes(),
		err:  ErrUnknownType,
	}} {
		h, msg, _, err := Next(tc.msg)
		if err != nil {
			t.Fatalf("%s: Next: %v", tc.name, err)
		}
		got, err := ParseLink(h, msg)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if got.Deleted != tc.want.Deleted || got.Family != tc.want.Family || got.Index != tc.want.Index ||
			!bytes.Equal(got.Name, tc.want.Name) || !bytes.Equal(got.Kind, tc.want.Kind) || got.Master != tc.want.Master {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
		if got.BridgePort() != (tc.want.Family == afBridge) {
			t.Errorf("%s: BridgePort %v", tc.name, got.BridgePort())
		}
		if n := testing.AllocsPerRun(10, func() { ParseLink(h, msg) }); n != 0 {
			t.Errorf("%s: %v allocations", tc.name, n)
		}
	}
}

func TestLinkDumpRequest(t *testing.T) {
	h, msg, rest, err := Next(LinkDumpRequest(42))
	if err != nil || len(rest) != 0 || h.Type != rtmGetLink || h.Seq != 42 || h.Flags != 0x301 || len(msg) != HeaderLen+ifinfoLen {
		t.Fatalf("request %+v, %d bytes, %d left, %v", h, len(msg), len(rest), err)
	}
}

// FuzzParseLink: never panics; Name and Kind are inside the message and
// hold no NUL.
func FuzzParseLink(f *testing.F) {
	f.Add(nltest.NewMsg(rtmNewLink, 0, 0, 0, nltest.Ifinfomsg(1, 7, 1, 0)).
		Attr(iflaIfname, nltest.CString("v0")).
		Attr(iflaMaster, nltest.U32(3)).
		Attr(iflaLinkinfo, nltest.Attr(iflaInfoKind, nltest.CString("veth"))).Bytes())
	f.Add(nltest.NewMsg(rtmDelLink, 0, 0, 0, nltest.Ifinfomsg(1, 7, 1, 0)).Bytes())
	f.Fuzz(func(t *testing.T, buf []byte) {
		h, msg, _, err := Next(buf)
		if err != nil {
			return
		}
		m, err := ParseLink(h, msg)
		if err != nil {
			return
		}
		for _, s := range [][]byte{m.Name, m.Kind} {
			if bytes.IndexByte(s, 0) >= 0 || (len(s) > 0 && !bytes.Contains(msg, s)) {
				t.Fatalf("%q is not a string of the message", s)
			}
		}
	})
}
