package exporter

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The name tables copy iproute2's for the values a routing change carries.
// They live here rather than in package rtnl so the sinks do not wait on it;
// they are arrays, not maps, so a lookup on the hot path is an index.

var protocolNames = [256]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
	8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
	14: "xorp", 15: "ntk", 16: "dhcp", 17: "mrouted", 18: "keepalived",
	42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
	189: "rip", 192: "eigrp",
}

const (
	rtnUnicast   = 1
	rtnBlackhole = 6
)

var routeTypeNames = [256]string{
	1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
	6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat",
}

const rtScopeNowhere = 255

var scopeNames = [256]string{
	0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere",
}

const (
	frActUnspec = 0
	frActToTbl  = 1
	frActGoto   = 2
)

var ruleActionNames = [256]string{
	1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit",
}

// appendName8 appends the name of v from names, or v in decimal when the
// table has none.
func appendName8(b []byte, names *[256]string, v uint8) []byte {
	if n := names[v]; n != "" {
		return append(b, n...)
	}
	return strconv.AppendUint(b, uint64(v), 10)
}

func appendTable(b []byte, t uint32) []byte {
	switch t {
	case 253:
		return append(b, "default"...)
	case 254:
		return append(b, "main"...)
	case 255:
		return append(b, "local"...)
	}
	return strconv.AppendUint(b, uint64(t), 10)
}

// appendErrno appends the symbolic name of a positive errno ("ESRCH"), or
// "E<n>" for one this platform does not name.
func appendErrno(b []byte, errno int32) []byte {
	if errno > 0 {
		if n := unix.ErrnoName(syscall.Errno(errno)); n != "" {
			return append(b, n...)
		}
	}
	return strconv.AppendInt(append(b, 'E'), int64(errno), 10)
}

func appendFamily(b []byte, f uint8) []byte {
	switch f {
	case 2:
		return append(b, "inet"...)
	case 10:
		return append(b, "inet6"...)
	}
	return strconv.AppendUint(b, uint64(f), 10)
}
