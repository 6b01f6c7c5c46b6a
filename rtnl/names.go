package rtnl

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// decimal holds "0".."255" so that names of unknown u8 values, printed per
// event, cost no allocation.
var decimal [256]string

var (
	protocolNames [256]string
	scopeNames    [256]string
	typeNames     [256]string
	actionNames   [256]string
)

func init() {
	for i := range decimal {
		decimal[i] = strconv.Itoa(i)
	}
	fill(&protocolNames, map[uint8]string{
		0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
		8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
		14: "xorp", 15: "ntk", 16: "dhcp", 17: "mrouted", 18: "keepalived",
		42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
		189: "rip", 192: "eigrp",
	})
	fill(&scopeNames, map[uint8]string{
		0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere",
	})
	fill(&typeNames, map[uint8]string{
		0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast",
		5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit",
		9: "throw", 10: "nat", 11: "xresolve",
	})
	// FR_ACT_TO_TBL is printed "lookup", as ip-rule(8) spells it.
	fill(&actionNames, map[uint8]string{
		0: "unspec", 1: "lookup", 2: "goto", 3: "nop", 6: "blackhole",
		7: "unreachable", 8: "prohibit",
	})
}

func fill(t *[256]string, known map[uint8]string) {
	for i := range t {
		t[i] = decimal[i]
	}
	for k, v := range known {
		t[k] = v
	}
}

// ProtocolName names a route's rtm_protocol (RTPROT_*) as
// /etc/iproute2/rt_protos does, or gives its number.
func ProtocolName(p uint8) string { return protocolNames[p] }

// ScopeName names an rtm_scope (RT_SCOPE_*), or gives its number.
func ScopeName(s uint8) string { return scopeNames[s] }

// TypeName names an rtm_type (RTN_*), or gives its number.
func TypeName(t uint8) string { return typeNames[t] }

// RuleActionName names a fib rule action (FR_ACT_*), or gives its number.
func RuleActionName(a uint8) string { return actionNames[a] }

// TableName names a routing table as /etc/iproute2/rt_tables does, or
// gives its number. Numbers above 255 allocate their string.
func TableName(t uint32) string {
	switch t {
	case 253:
		return "default"
	case 254:
		return "main"
	case 255:
		return "local"
	case 0:
		return "unspec"
	}
	if t < uint32(len(decimal)) {
		return decimal[t]
	}
	return strconv.FormatUint(uint64(t), 10)
}

// ErrnoName names an errno ("EEXIST"), or gives "E" and its number. The
// sign is ignored: netlink acks carry negative errnos, events positive.
func ErrnoName(errno int32) string {
	e := int64(errno)
	if e < 0 {
		e = -e
	}
	// x/sys names 95 by its alias ENOTSUP; the kernel's networking code,
	// and so anyone reading its errors, says EOPNOTSUPP.
	if e == int64(unix.EOPNOTSUPP) {
		return "EOPNOTSUPP"
	}
	if n := unix.ErrnoName(unix.Errno(e)); n != "" {
		return n
	}
	return "E" + strconv.FormatInt(e, 10)
}
