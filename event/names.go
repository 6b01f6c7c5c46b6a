package event

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// The names of the numbers an Event carries (protocol, scope, type, rule
// action, table, errno), as iproute2 prints them. This is the one table:
// it lives with the event model so that every package that shows an event
// (the sinks, the tracer's logs, a future policy compiler) reads the same
// names without importing a sink. Lookups are array indexes into
// precomputed strings: naming a value on the hot path allocates nothing.

// decimal holds "0".."255", the name of a value a table does not know.
var decimal [256]string

var (
	protocolNames   [256]string
	scopeNames      [256]string
	routeTypeNames  [256]string
	ruleActionNames [256]string
	// ruleActionKnown tells a named rule action from one shown as its
	// number: ip-rule(8) prints an unknown one as "action N".
	ruleActionKnown [256]bool
)

func init() {
	for i := range decimal {
		decimal[i] = strconv.Itoa(i)
	}
	fill(&protocolNames, nil, map[uint8]string{
		0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
		8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
		14: "xorp", 15: "ntk", 16: "dhcp", 17: "mrouted", 18: "keepalived",
		42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
		189: "rip", 192: "eigrp",
	})
	fill(&scopeNames, nil, map[uint8]string{
		0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere",
	})
	fill(&routeTypeNames, nil, map[uint8]string{
		0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast",
		5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit",
		9: "throw", 10: "nat", 11: "xresolve",
	})
	// FR_ACT_TO_TBL is printed "lookup", as ip-rule(8) spells it.
	fill(&ruleActionNames, &ruleActionKnown, map[uint8]string{
		0: "unspec", 1: "lookup", 2: "goto", 3: "nop", 6: "blackhole",
		7: "unreachable", 8: "prohibit",
	})
}

func fill(t *[256]string, known *[256]bool, names map[uint8]string) {
	copy(t[:], decimal[:])
	for k, v := range names {
		t[k] = v
		if known != nil {
			known[k] = true
		}
	}
}

// Values the sinks treat specially.
const (
	RouteTypeUnicast   = 1 // RTN_UNICAST: the default, not printed
	RouteTypeBlackhole = 6 // RTN_BLACKHOLE
	ScopeNowhere       = 255
	RuleActionUnspec   = 0 // FR_ACT_UNSPEC: a delete naming only the table
	RuleActionToTable  = 1 // FR_ACT_TO_TBL
	RuleActionGoto     = 2 // FR_ACT_GOTO
)

// ProtocolName names a route's rtm_protocol (RTPROT_*) as
// /etc/iproute2/rt_protos does, or gives its number.
func ProtocolName(p uint8) string { return protocolNames[p] }

// ScopeName names an rtm_scope (RT_SCOPE_*), or gives its number.
func ScopeName(s uint8) string { return scopeNames[s] }

// RouteTypeName names an rtm_type (RTN_*), or gives its number.
func RouteTypeName(t uint8) string { return routeTypeNames[t] }

// RuleActionName names a fib rule action (FR_ACT_*), or gives its number;
// ok is false for a number.
func RuleActionName(a uint8) (name string, ok bool) { return ruleActionNames[a], ruleActionKnown[a] }

// TableName names a routing table as /etc/iproute2/rt_tables does, or
// gives its number. Numbers above 255 allocate their string: use
// AppendTable on the hot path.
func TableName(t uint32) string {
	if n := tableName(t); n != "" {
		return n
	}
	return strconv.FormatUint(uint64(t), 10)
}

// AppendTable appends TableName(t) without allocating.
func AppendTable(b []byte, t uint32) []byte {
	if n := tableName(t); n != "" {
		return append(b, n...)
	}
	return strconv.AppendUint(b, uint64(t), 10)
}

func tableName(t uint32) string {
	switch t {
	case 0:
		return "unspec"
	case 253:
		return "default"
	case 254:
		return "main"
	case 255:
		return "local"
	}
	if t < uint32(len(decimal)) {
		return decimal[t]
	}
	return ""
}

// ErrnoName names an errno ("EEXIST"), or gives "E" and its number. The
// sign is ignored: netlink acks carry negative errnos, events positive.
func ErrnoName(errno int32) string {
	if n := errnoName(errno); n != "" {
		return n
	}
	return "E" + strconv.FormatInt(abs(errno), 10)
}

// AppendErrno appends ErrnoName(errno) without allocating.
func AppendErrno(b []byte, errno int32) []byte {
	if n := errnoName(errno); n != "" {
		return append(b, n...)
	}
	return strconv.AppendInt(append(b, 'E'), abs(errno), 10)
}

func errnoName(errno int32) string {
	e := abs(errno)
	// x/sys names 95 by its alias ENOTSUP; the kernel's networking code,
	// and so anyone reading its errors, says EOPNOTSUPP.
	if e == int64(unix.EOPNOTSUPP) {
		return "EOPNOTSUPP"
	}
	return unix.ErrnoName(unix.Errno(e))
}

func abs(errno int32) int64 {
	if e := int64(errno); e >= 0 {
		return e
	}
	return -int64(errno)
}
