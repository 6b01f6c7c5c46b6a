package rtnl

import "encoding/binary"

// Link attributes beyond IFLA_IFNAME, and the link dump request.
const (
	iflaMaster   = 10 // IFLA_MASTER: u32 ifindex of the bridge, bond or VRF
	iflaLinkinfo = 18 // IFLA_LINKINFO: nested
	iflaInfoKind = 1  // IFLA_INFO_KIND, inside IFLA_LINKINFO: string
	afBridge     = 7  // AF_BRIDGE
	rtmGetLink   = 18 // RTM_GETLINK
)

// LinkMsg is what an RTM_NEWLINK or RTM_DELLINK message says of its link.
// Name and Kind point into the message (NUL excluded): copy them to keep
// them.
type LinkMsg struct {
	Deleted bool   // RTM_DELLINK
	Family  uint8  // ifi_family: AF_UNSPEC, or AF_BRIDGE for a bridge port's own notifications
	Index   uint32 // ifi_index
	Name    []byte // IFLA_IFNAME
	Kind    []byte // IFLA_INFO_KIND: veth, bridge, vxlan, ...; empty for a physical device
	Master  uint32 // IFLA_MASTER, 0 without one
}

// BridgePort reports whether the message is one the bridge sends about
// one of its ports (family AF_BRIDGE): it carries the port's bridge state,
// not all of the link, and its RTM_DELLINK means the port left the bridge,
// not that the link is gone. Link caches skip these.
func (m *LinkMsg) BridgePort() bool { return m.Family == afBridge }

// ParseLink reads a link message (as split by Next, header included)
// without allocating. ErrUnknownType for other message types.
func ParseLink(h Header, msg []byte) (LinkMsg, error) {
	var m LinkMsg
	switch h.Type {
	case rtmNewLink, rtmSetLink:
	case rtmDelLink:
		m.Deleted = true
	default:
		return m, ErrUnknownType
	}
	if h.Len < HeaderLen {
		return m, ErrBadLength
	}
	if uint64(h.Len) > uint64(len(msg)) {
		return m, ErrTruncated
	}
	b := msg[HeaderLen:h.Len]
	if len(b) < ifinfoLen {
		return m, ErrTruncated
	}
	m.Family = b[0]
	m.Index = ne.Uint32(b[4:])
	for a := b[ifinfoLen:]; len(a) > 0; {
		typ, v, rest, err := nextAttr(a)
		if err != nil {
			return m, err
		}
		a = rest
		switch typ {
		case iflaIfname:
			m.Name = cstring(v)
		case iflaMaster:
			if m.Master, err = attrU32(v); err != nil {
				return m, err
			}
		case iflaLinkinfo:
			for n := v; len(n) > 0; {
				t, nv, nrest, err := nextAttr(n)
				if err != nil {
					return m, err
				}
				n = nrest
				if t == iflaInfoKind {
					m.Kind = cstring(nv)
				}
			}
		}
	}
	return m, nil
}

// cstring is v up to its first NUL.
func cstring(v []byte) []byte {
	for i, c := range v {
		if c == 0 {
			return v[:i:i]
		}
	}
	return v[:len(v):len(v)]
}

// LinkDumpRequest is an RTM_GETLINK dump request with sequence number
// seq: every link of the namespace, as RTM_NEWLINK messages with that seq
// and NLM_F_MULTI, then NLMSG_DONE.
func LinkDumpRequest(seq uint32) []byte {
	req := make([]byte, HeaderLen+ifinfoLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], rtmGetLink)
	binary.NativeEndian.PutUint16(req[6:], 0x1|0x300) // NLM_F_REQUEST|NLM_F_DUMP
	binary.NativeEndian.PutUint32(req[8:], seq)
	return req
}

// ErrorCode is the errno of an NLMSG_ERROR message (0 for an ack), and
// false for other messages or a truncated one.
func ErrorCode(h Header, msg []byte) (int32, bool) {
	if h.Type != 2 || len(msg) < HeaderLen+4 { // NLMSG_ERROR
		return 0, false
	}
	return -int32(ne.Uint32(msg[HeaderLen:])), true
}
