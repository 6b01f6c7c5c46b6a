package main

// The bench's workloads that are not iproute2: a tight netlink client and a
// UDP sendmsg loop. Each is a hidden subcommand that `routetrace bench`
// runs as a child process, because the tracer ignores its own process: a
// workload in the bench's process would cost the tracer nothing.

import (
	endian "encoding/binary" // "binary" is the tests' routetrace under test
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// childReport is what a workload child prints on stdout, one JSON object:
// who it was (the actor the tracer must report) and how long its loop took.
type childReport struct {
	Pid      int     `json:"pid"`
	Comm     string  `json:"comm"`
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	Failed   int     `json:"failed"`
	// FirstError is the first failure's errno name, to make a failing run
	// say why.
	FirstError string `json:"first_error,omitempty"`
}

func benchClientCommand() *cli.Command {
	return &cli.Command{
		Name:   "bench-client",
		Hidden: true,
		Usage:  "(for routetrace bench) add or delete routes, one RTM_NEWROUTE/RTM_DELROUTE per sendmsg, each acked",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "netns", Required: true, Usage: "path of the network namespace"},
			&cli.StringFlag{Name: "op", Value: "del", Usage: "add or del"},
			&cli.IntFlag{Name: "n", Value: 1000, Usage: "routes: 10.0.0.0/24, 10.0.1.0/24, ... as benchRoute numbers them"},
			&cli.IntFlag{Name: "oif", Usage: "ifindex the routes go through (add)"},
		},
		Action: runBenchClient,
	}
}

func benchUDPCommand() *cli.Command {
	return &cli.Command{
		Name:   "bench-udp",
		Hidden: true,
		Usage:  "(for routetrace bench) send --count one-byte UDP datagrams on loopback with sendmsg",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "netns", Required: true, Usage: "path of the network namespace"},
			&cli.IntFlag{Name: "count", Value: 100000},
		},
		Action: runBenchUDP,
	}
}

// enterNetns moves this goroutine's thread into the namespace at path for
// good: the thread stays locked, so the sockets it opens belong there.
func enterNetns(path string) error {
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering netns %s: %w", path, err)
	}
	return nil
}

func selfReport() childReport {
	comm, _ := os.ReadFile("/proc/self/comm")
	return childReport{Pid: os.Getpid(), Comm: strings.TrimSpace(string(comm))}
}

// runBenchClient is a routing daemon at its fastest: one route per
// request, waiting for each ack, as a BGP speaker withdrawing a feed does.
func runBenchClient(c *cli.Context) error {
	n, op := c.Int("n"), c.String("op")
	msgType, flags := uint16(unix.RTM_DELROUTE), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	switch op {
	case "del":
	case "add":
		msgType, flags = unix.RTM_NEWROUTE, flags|unix.NLM_F_CREATE|unix.NLM_F_EXCL
	default:
		return fmt.Errorf("--op %q: want add or del", op)
	}
	if err := enterNetns(c.String("netns")); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening a NETLINK_ROUTE socket: %w", err)
	}
	defer unix.Close(fd)
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding the netlink socket: %w", err)
	}

	req := make([]byte, 0, 64)
	ack := make([]byte, 4096)
	rep := selfReport()
	start := time.Now()
	for i := range n {
		req = appendRouteRequest(req[:0], msgType, flags, uint32(i+1), benchRoute(i), uint32(c.Int("oif")))
		if _, err := unix.SendmsgN(fd, req, nil, kernel, 0); err != nil {
			return fmt.Errorf("sendmsg of request %d: %w", i+1, err)
		}
		errno, err := readAck(fd, ack, uint32(i+1))
		if err != nil {
			return err
		}
		if errno != 0 {
			if rep.Failed == 0 {
				rep.FirstError = unix.ErrnoName(errno)
			}
			rep.Failed++
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.Requests = n
	return json.NewEncoder(c.App.Writer).Encode(rep)
}

// appendRouteRequest appends one route request for 10.x.y.0/24 in table
// main, protocol static, as `ip route add|del ... dev v0 proto static`.
func appendRouteRequest(b []byte, msgType, flags uint16, seq uint32, dst [4]byte, oif uint32) []byte {
	start := len(b)
	b = endian.NativeEndian.AppendUint32(b, 0) // nlmsg_len, set below
	b = endian.NativeEndian.AppendUint16(b, msgType)
	b = endian.NativeEndian.AppendUint16(b, flags)
	b = endian.NativeEndian.AppendUint32(b, seq)
	b = endian.NativeEndian.AppendUint32(b, 0) // nlmsg_pid: the kernel
	scope, typ := uint8(unix.RT_SCOPE_NOWHERE), uint8(unix.RTN_UNSPEC)
	if msgType == unix.RTM_NEWROUTE {
		scope, typ = unix.RT_SCOPE_LINK, unix.RTN_UNICAST
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
	b = append(b, unix.AF_INET, 24, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, scope, typ)
	b = endian.NativeEndian.AppendUint32(b, 0)
	b = appendAttr(b, unix.RTA_DST, dst[:])
	if oif != 0 {
		b = appendAttr(b, unix.RTA_OIF, endian.NativeEndian.AppendUint32(nil, oif))
	}
	endian.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func appendAttr(b []byte, typ uint16, val []byte) []byte {
	b = endian.NativeEndian.AppendUint16(b, uint16(4+len(val)))
	b = endian.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

var errNoAck = errors.New("no NLMSG_ERROR answer")

// readAck reads until the ack of seq and returns its errno (0: done). It
// reads with recvmsg, as iproute2 and most daemons do.
func readAck(fd int, buf []byte, seq uint32) (unix.Errno, error) {
	for {
		n, _, _, _, err := unix.Recvmsg(fd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reading the ack of request %d: %w", seq, err)
		}
		for msg := buf[:n]; len(msg) >= unix.NLMSG_HDRLEN; {
			l := int(endian.NativeEndian.Uint32(msg))
			if l < unix.NLMSG_HDRLEN || l > len(msg) {
				return 0, fmt.Errorf("reading the ack of request %d: bad message length %d", seq, l)
			}
			typ := endian.NativeEndian.Uint16(msg[4:])
			if typ == unix.NLMSG_ERROR && endian.NativeEndian.Uint32(msg[8:]) == seq && l >= unix.NLMSG_HDRLEN+4 {
				return unix.Errno(-int32(endian.NativeEndian.Uint32(msg[unix.NLMSG_HDRLEN:]))), nil
			}
			msg = msg[min(len(msg), (l+3)&^3):]
		}
		if n == 0 {
			return 0, fmt.Errorf("request %d: %w", seq, errNoAck)
		}
	}
}

// runBenchUDP sends one-byte datagrams to a socket of its own on loopback
// that never reads: the kernel drops what does not fit, sendmsg succeeds.
// It measures what the tracer's syscall hooks cost a process that has
// nothing to do with routing.
func runBenchUDP(c *cli.Context) error {
	count := c.Int("count")
	if err := enterNetns(c.String("netns")); err != nil {
		return err
	}
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the receiving UDP socket: %w", err)
	}
	defer unix.Close(rx)
	if err := unix.Bind(rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("binding the receiving UDP socket: %w", err)
	}
	to, err := unix.Getsockname(rx)
	if err != nil {
		return fmt.Errorf("reading the receiving socket's port: %w", err)
	}
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the sending UDP socket: %w", err)
	}
	defer unix.Close(tx)
	payload := []byte{0}
	rep := selfReport()
	start := time.Now()
	for i := range count {
		if _, err := unix.SendmsgN(tx, payload, nil, to, 0); err != nil {
			if rep.Failed == 0 {
				rep.FirstError = fmt.Sprintf("datagram %d: %v", i+1, err)
			}
			rep.Failed++
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.Requests = count
	return json.NewEncoder(c.App.Writer).Encode(rep)
}
