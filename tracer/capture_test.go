package tracer

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/nltest"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/rtnl"
)

// Tier 3's capture of requests and acks, whichever way a requester sends
// and reads them. The socket capture sees requests where the kernel frees
// them and acks where they are copied out, so it has no per-syscall limits
// and no syscall it does not know; the syscall capture knows sendmsg,
// sendmmsg (64 messages), sendto and write, and reads by recvmsg and
// recvfrom only. ROUTETRACE_CAPTURE=syscalls runs these with the fallback:
// the tests of what only the socket capture sees skip there, saying so.

// skipForcedFIBTier skips a test of tier 3's capture, before it starts a
// tracer, when the run forces tier 1 or 2: a forced tier attaches every FIB
// hook or fails, so tier 3 cannot be in use. Under TCG a tracer start and
// stop costs seconds, spent on nothing.
func skipForcedFIBTier(t *testing.T) {
	t.Helper()
	if m := attachMode(); m == "fentry" || m == "kprobe" {
		t.Skip(tier3Unused)
	}
}

const tier3Unused = "tier 3 is not used here (the FIB hooks attach); this tests its capture"

// requireTier3 skips a test of tier 3's capture where the FIB hooks attach
// (they see changes, not requests).
func requireTier3(t *testing.T, s *session) {
	t.Helper()
	if !s.tr.Tier3() {
		t.Skip(tier3Unused)
	}
}

func requireSocketCapture(t *testing.T, s *session, why string) {
	t.Helper()
	requireTier3(t, s)
	c := s.tr.Capture()
	if c == CaptureSocket {
		return
	}
	if captureMode() != CaptureSyscalls {
		// Asked for auto: a kernel with BTF has the socket capture's BTF
		// tracepoints, so its refusal is a bug (a verifier rejection),
		// not a skip (it hid one: the fallback passes every other test).
		if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
			t.Fatalf("the socket capture was refused on a kernel with BTF (the tracer fell back to the %s capture; "+
				"its log, or `routetrace probe`, has the verifier's reason)", c)
		}
	}
	t.Skipf("the %s capture %s: this tests the socket capture", c, why)
}

// rtnlSocketIn opens a bound rtnetlink socket in ns, closed when the test
// ends.
func rtnlSocketIn(t *testing.T, ns *testnet.Netns) int {
	t.Helper()
	fd, err := rtnl.SocketIn(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	return fd
}

// ackErrno reads one datagram with read and returns the errno of the ack
// it starts with.
func ackErrno(t *testing.T, fd int, read func(buf []byte) (int, error)) int32 {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := read(buf)
	if err != nil {
		t.Fatalf("reading the ack: %v", err)
	}
	h, msg, _, err := rtnl.Next(buf[:n])
	if err != nil || h.Type != unix.NLMSG_ERROR || len(msg) < rtnl.HeaderLen+4 {
		t.Fatalf("read %d bytes, not an ack (type %d, %v)", n, h.Type, err)
	}
	return -int32(binary.NativeEndian.Uint32(msg[rtnl.HeaderLen:]))
}

func routeAdd(seq, oif uint32, dst string) []byte {
	return nltest.NewMsg(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, seq, 0,
		nltest.Rtmsg(unix.AF_INET, 24, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST)).
		Attr(unix.RTA_DST, nltest.IP(dst)).Attr(unix.RTA_OIF, nltest.U32(oif)).Bytes()
}

func routeDel(seq uint32, dst string) []byte {
	return nltest.NewMsg(unix.RTM_DELROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, 0,
		nltest.Rtmsg(unix.AF_INET, 24, 0, 0, unix.RT_TABLE_MAIN, 0, 0, 0)).Attr(unix.RTA_DST, nltest.IP(dst)).Bytes()
}

// thisTest sets a wanted change's actor: the test process itself (the
// tracer traces its own process in tests, see startTracer).
func thisTest(w want) want {
	w.pid = uint32(os.Getpid())
	w.comm = selfComm()
	w.origin = event.OriginNetlink
	return w
}

func selfComm() string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// A request sent with write(2) and its failure read with read(2): the
// syscall capture reads no read(2), so the failure went unreported there
// (and the request counted unconfirmed).
func TestRequestWithWriteAckWithRead(t *testing.T) {
	skipForcedFIBTier(t)
	ns := testnet.New(t)
	s := startTracer(t, ns)
	requireSocketCapture(t, s, "scans no ack read with read(2)")
	fd := rtnlSocketIn(t, ns)
	read := func(buf []byte) (int, error) { return unix.Read(fd, buf) }

	if _, err := unix.Write(fd, routeAdd(1, ns.V0, "198.51.100.0")); err != nil {
		t.Fatal(err)
	}
	if e := ackErrno(t, fd, read); e != 0 {
		t.Fatalf("route add: errno %d", e)
	}
	if _, err := unix.Write(fd, routeDel(2, "203.0.113.0")); err != nil {
		t.Fatal(err)
	}
	if e := ackErrno(t, fd, read); e != int32(unix.ESRCH) {
		t.Fatalf("deleting a missing route: errno %d, want ESRCH", e)
	}
	evs := byRequester(in(s.stop(), ns))
	s.checkExactly(evs, ns,
		thisTest(want{op: event.OpAdd, object: event.ObjectRoute, family: event.FamilyInet, dst: "198.51.100.0/24",
			table: 254, proto: unix.RTPROT_STATIC, oif: ns.V0}),
		thisTest(want{op: event.OpDelete, object: event.ObjectRoute, family: event.FamilyInet, dst: "203.0.113.0/24",
			table: 254, errno: int32(unix.ESRCH)}),
	)
	if l := s.tr.Losses(); l.Total() != 0 {
		t.Errorf("losses %+v, want none", l)
	}
}

// mmsghdr is struct mmsghdr (linux/socket.h).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// One sendmmsg of 100 requests: every one reported, by this test, nothing
// truncated. The syscall capture walks 64 messages of a sendmmsg and
// attributes the rest by portid, counting them truncated.
func TestSendmmsgOf100(t *testing.T) {
	skipForcedFIBTier(t)
	ns := testnet.New(t)
	s := startTracer(t, ns)
	requireSocketCapture(t, s, "walks 64 messages of a sendmmsg")
	fd := rtnlSocketIn(t, ns)

	const n = 100
	bufs := make([][]byte, n)
	iovs := make([]unix.Iovec, n)
	msgs := make([]mmsghdr, n)
	var wants []want
	for i := range n {
		dst := fmt.Sprintf("10.77.%d.0", i)
		bufs[i] = nltest.NewMsg(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL, uint32(100+i), 0,
			nltest.Rtmsg(unix.AF_INET, 24, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST)).
			Attr(unix.RTA_DST, nltest.IP(dst)).Attr(unix.RTA_OIF, nltest.U32(ns.V0)).Bytes()
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
		wants = append(wants, thisTest(want{op: event.OpAdd, object: event.ObjectRoute, family: event.FamilyInet,
			dst: dst + "/24", table: 254, proto: unix.RTPROT_STATIC, oif: ns.V0}))
	}
	sent, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), n, 0, 0, 0)
	if errno != 0 || sent != n {
		t.Fatalf("sendmmsg: %d sent, %v", sent, errno)
	}
	evs := byRequester(in(s.stop(), ns))
	s.checkExactly(evs, ns, wants...)
	if l := s.tr.Losses(); l.Total() != 0 {
		t.Errorf("losses %+v, want none", l)
	}
}

// A failure ack peeked (twice: to size the buffer, as iproute2 does, and
// once more) and then read is reported once.
func TestPeekedFailureAckReportedOnce(t *testing.T) {
	skipForcedFIBTier(t)
	ns := testnet.New(t)
	s := startTracer(t, ns)
	requireTier3(t, s)
	fd := rtnlSocketIn(t, ns)

	if err := unix.Sendto(fd, routeDel(7, "203.0.113.0"), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	var empty [0]byte
	if n, _, err := unix.Recvfrom(fd, empty[:], unix.MSG_PEEK|unix.MSG_TRUNC); err != nil || n <= 0 {
		t.Fatalf("peeking at the ack's size: %d, %v", n, err)
	}
	peek := func(buf []byte) (int, error) { n, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK); return n, err }
	recv := func(buf []byte) (int, error) {
		n, _, _, _, err := unix.Recvmsg(fd, buf, nil, 0)
		return n, err
	}
	for _, read := range []func([]byte) (int, error){peek, recv} {
		if e := ackErrno(t, fd, read); e != int32(unix.ESRCH) {
			t.Fatalf("errno %d, want ESRCH", e)
		}
	}
	evs := byRequester(in(s.stop(), ns))
	s.checkExactly(evs, ns,
		thisTest(want{op: event.OpDelete, object: event.ObjectRoute, family: event.FamilyInet, dst: "203.0.113.0/24",
			table: 254, errno: int32(unix.ESRCH)}))
}

// With the socket capture and no Ioctl (no syscall tracepoint at all), a
// route ioctl's change is still reported from the kernel's notification,
// and named after route(8) where ORIGIN records are written (the
// sk_data_ready BTF tracepoint, 6.6+; an unknown actor before); a failed
// ioctl, which notifies nothing, is not seen (that needs --ioctl).
func TestIoctlWithoutTracepoints(t *testing.T) {
	skipForcedFIBTier(t)
	if _, err := exec.LookPath("route"); err != nil {
		t.Skip("needs net-tools' route command (apt-get install net-tools)")
	}
	ns := testnet.New(t)
	s := startTracer(t, ns)
	requireSocketCapture(t, s, "always attributes ioctls")
	add, out, err := ns.Exec("route", "add", "-net", "198.51.100.0", "netmask", "255.255.255.0", "dev", "v0")
	if err != nil {
		t.Fatalf("route add: %v: %s", err, out)
	}
	del, out, err := ns.Exec("route", "del", "-net", "198.51.100.0", "netmask", "255.255.255.0", "dev", "v0")
	if err != nil {
		t.Fatalf("route del: %v: %s", err, out)
	}
	if _, _, err := ns.Exec("route", "del", "-net", "203.0.113.0", "netmask", "255.255.255.0"); err == nil {
		t.Fatal("route del of a missing route succeeded")
	}
	var reports []event.Event
	for _, ev := range in(s.stop(), ns) {
		if ev.Object == event.ObjectRoute && (ev.Dst.String() == "198.51.100.0/24" || ev.Dst.String() == "203.0.113.0/24") {
			reports = append(reports, ev)
		}
	}
	if len(reports) != 2 || reports[0].Op != event.OpAdd || reports[1].Op != event.OpDelete || reports[0].Errno != 0 || reports[1].Errno != 0 {
		t.Fatalf("got %s, want the add and the delete of 198.51.100.0/24, and not the failure", describe(reports))
	}
	for i, pid := range []uint32{add, del} {
		ev := reports[i]
		if s.tr.NamesIoctls() {
			if ev.Origin != event.OriginIoctl || ev.Actor.Tgid != pid || ev.Actor.Comm.String() != "route" || ev.Actor.Kernel {
				t.Errorf("got %s (%s), want it by route[%d], ioctl", got(&ev), ev.Origin, pid)
			}
		} else if ev.Actor.Tgid != 0 || ev.Actor.Comm.String() != "" {
			t.Errorf("got %s, want an unknown actor (no ORIGIN records on this kernel)", got(&ev))
		}
	}
}

// Failures read by another thread while the requester is still in sendto:
// with the socket capture the ack's record can be written before its
// request's (the request is recorded when the kernel frees it, after the
// ack was queued and the reader woken). Each failure is still reported
// once, with its route and the requester, and nothing is left unconfirmed.
// The race is rare (here 1 ack in ~1,200 came first, with a reader polling
// a non-blocking socket); the joiner's own test (TestJoinAckBeforeRequest)
// has it every time.
func TestFailuresReadConcurrently(t *testing.T) {
	skipForcedFIBTier(t)
	ns := testnet.New(t)
	s := startTracer(t, ns)
	requireTier3(t, s)
	fd := rtnlSocketIn(t, ns)

	const n = 300
	// room for every ack: a reader that lags must not lose any (ENOBUFS)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20); err != nil {
		t.Fatal(err)
	}
	read := make(chan int, 1)
	readErr := make(chan error, 1)
	go func() {
		// Its own thread, blocked in recvfrom while sendto runs.
		runtime.LockOSThread()
		buf := make([]byte, 4096)
		acks := 0
		for acks < n {
			size, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EINTR || err == unix.EAGAIN {
				// the runtime's preemption signal; a non-blocking socket
				// (rtnl's are) with nothing yet
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				readErr <- err
				break
			}
			if h, _, _, err := rtnl.Next(buf[:size]); err == nil && h.Type == unix.NLMSG_ERROR {
				acks++
			}
		}
		read <- acks
	}()
	for i := range n {
		if err := unix.Sendto(fd, routeDel(uint32(1000+i), "203.0.113.0"), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case acks := <-read:
		if acks != n {
			select {
			case err := <-readErr:
				t.Fatalf("read %d acks, want %d: %v", acks, n, err)
			default:
				t.Fatalf("read %d acks, want %d", acks, n)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the acks were not all read")
	}
	evs := byRequester(in(s.stop(), ns))
	wants := make([]want, n)
	for i := range wants {
		wants[i] = thisTest(want{op: event.OpDelete, object: event.ObjectRoute, family: event.FamilyInet, dst: "203.0.113.0/24",
			table: 254, errno: int32(unix.ESRCH)})
	}
	s.checkExactly(evs, ns, wants...)
	if l := s.tr.Losses(); l.Total() != 0 {
		t.Errorf("losses %+v, want none", l)
	}
	t.Logf("%d of %d acks came before their request's record", s.tr.Stats().AcksParked.Load(), n)
}

// ioUringSendmsg sends one message on fd with an io_uring IORING_OP_SENDMSG
// and waits for it to complete; it returns the result (bytes or -errno).
// The smallest ring that does it: one entry, no library.
func ioUringSendmsg(t *testing.T, fd int, msg []byte) int32 {
	t.Helper()
	const (
		sysIoUringSetup = 425
		sysIoUringEnter = 426
		opSendmsg       = 9
		offSQEs         = 0x10000000
		offCQRing       = 0x8000000
		enterGetEvents  = 1
	)
	// struct io_uring_params: 10 u32, then the SQ and CQ ring offsets.
	var p struct {
		sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
		resv                                                                   [3]uint32
		sqOff                                                                  struct {
			head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
			userAddr                                                        uint64
		}
		cqOff struct {
			head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
			userAddr                                                        uint64
		}
	}
	ring, _, errno := unix.Syscall(sysIoUringSetup, 1, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		t.Skipf("io_uring_setup: %v", errno)
	}
	defer unix.Close(int(ring))
	sq, err := unix.Mmap(int(ring), 0, int(p.sqOff.array+p.sqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(sq)
	sqes, err := unix.Mmap(int(ring), offSQEs, int(p.sqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(sqes)
	cq, err := unix.Mmap(int(ring), offCQRing, int(p.cqOff.cqes+p.cqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(cq)

	iov := unix.Iovec{Base: &msg[0]}
	iov.SetLen(len(msg))
	var hdr unix.Msghdr
	hdr.Iov = &iov
	hdr.SetIovlen(1)
	sqe := sqes[:64]
	clear(sqe)
	sqe[0] = opSendmsg
	binary.NativeEndian.PutUint32(sqe[4:], uint32(fd))
	binary.NativeEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(&hdr))))
	binary.NativeEndian.PutUint32(sqe[24:], 1)
	binary.NativeEndian.PutUint64(sqe[32:], 42) // user_data
	tail := (*uint32)(unsafe.Pointer(&sq[p.sqOff.tail]))
	mask := *(*uint32)(unsafe.Pointer(&sq[p.sqOff.ringMask]))
	*(*uint32)(unsafe.Pointer(&sq[p.sqOff.array+(*tail&mask)*4])) = 0
	atomic.AddUint32(tail, 1)
	if _, _, errno := unix.Syscall6(sysIoUringEnter, ring, 1, 1, enterGetEvents, 0, 0); errno != 0 {
		t.Fatalf("io_uring_enter: %v", errno)
	}
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&iov)
	runtime.KeepAlive(msg)
	cqHead := atomic.LoadUint32((*uint32)(unsafe.Pointer(&cq[p.cqOff.head])))
	cqMask := *(*uint32)(unsafe.Pointer(&cq[p.cqOff.ringMask]))
	cqe := cq[p.cqOff.cqes+(cqHead&cqMask)*16:]
	if binary.NativeEndian.Uint64(cqe) != 42 {
		t.Fatalf("completion for user_data %d, want 42", binary.NativeEndian.Uint64(cqe))
	}
	return int32(binary.NativeEndian.Uint32(cqe[8:]))
}

// A request sent through io_uring (IORING_OP_SENDMSG): no syscall
// tracepoint sees it, the socket capture does, in the submitting task.
func TestRequestThroughIoUring(t *testing.T) {
	skipForcedFIBTier(t)
	ns := testnet.New(t)
	s := startTracer(t, ns)
	requireSocketCapture(t, s, "sees no io_uring submission")
	fd := rtnlSocketIn(t, ns)
	add := routeAdd(3, ns.V0, "198.51.100.0")
	if n := ioUringSendmsg(t, fd, add); n != int32(len(add)) {
		t.Fatalf("io_uring sendmsg: %d, want %d", n, len(add))
	}
	read := func(buf []byte) (int, error) {
		for range 100 {
			n, err := unix.Read(fd, buf)
			if err != unix.EAGAIN {
				return n, err
			}
			time.Sleep(time.Millisecond)
		}
		return 0, unix.EAGAIN
	}
	if e := ackErrno(t, fd, read); e != 0 {
		t.Fatalf("route add: errno %d", e)
	}
	evs := byRequester(in(s.stop(), ns))
	s.checkExactly(evs, ns,
		thisTest(want{op: event.OpAdd, object: event.ObjectRoute, family: event.FamilyInet, dst: "198.51.100.0/24",
			table: 254, proto: unix.RTPROT_STATIC, oif: ns.V0}))
}
