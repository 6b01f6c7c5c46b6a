// Command ioctl32 sends one SIOCADDRT or SIOCDELRT for an IPv4 network,
// built as a 32-bit binary (GOARCH=386) so that a 64-bit kernel takes the
// compat ioctl path: the enforcer's lsm/file_ioctl_compat test.
//
//	ioctl32 del 10.244.1.0 255.255.255.0
package main

import (
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rtentry is struct rtentry with 32-bit longs and pointers.
type rtentry struct {
	pad1          uint32
	dst, gw, mask [16]byte
	flags         uint16
	pad2          int16
	pad3, pad4    uint32
	metric        int16
	_             [2]byte
	dev           uint32
	mtu, window   uint32
	irtt          uint16
	_             [2]byte
}

func sockaddr(s string) (b [16]byte) {
	a := netip.MustParseAddr(s).As4()
	b[0] = unix.AF_INET // little-endian sa_family
	copy(b[4:], a[:])
	return b
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: ioctl32 add|del NET MASK")
		os.Exit(2)
	}
	cmd := uintptr(unix.SIOCDELRT)
	if os.Args[1] == "add" {
		cmd = unix.SIOCADDRT
	}
	r := rtentry{dst: sockaddr(os.Args[2]), mask: sockaddr(os.Args[3]), flags: unix.RTF_UP}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "socket:", err)
		os.Exit(1)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), cmd, uintptr(unsafe.Pointer(&r))); errno != 0 {
		fmt.Fprintln(os.Stderr, "ioctl:", errno)
		os.Exit(1)
	}
}
