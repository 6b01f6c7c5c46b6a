package tracer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/nltest"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/rtnl"
	"github.com/routetrace/routetrace/tier3"
	"golang.org/x/sys/unix"
)

// Removals that no captured request explains: the kernel flushes IPv4
// routes without a word, and nothing in the traced namespace asked for it.
// Each is found from the kernel's own address or link notification, and
// blamed on it, never on an unrelated request. Before these were found
// from notifications, every case here reported nothing and "0 lost".
func TestRemovalsWithoutRequest(t *testing.T) {
	cases := []struct {
		name string
		// setup runs before tracing; act makes the removal.
		setup       func(t *testing.T, ns *testnet.Netns) (other *testnet.Netns)
		act         func(t *testing.T, ns, other *testnet.Netns)
		causeObject event.Object
		// causeComm: the cause's actor, where tier 3 can name it (an
		// ioctl's task, from its notification's ORIGIN record).
		causeComm string
		causeOp   event.Op
		orOp      event.Op // another acceptable cause op, if any
		gateway   string
		src       string // the route's preferred source, if any
	}{
		{
			name: "peer deleted from another namespace",
			setup: func(t *testing.T, ns *testnet.Netns) *testnet.Netns {
				other := bareNetns(t)
				ns.IP("link", "set", "v1", "netns", other.Name)
				return other
			},
			act: func(t *testing.T, ns, other *testnet.Netns) {
				run(t, "ip", "-n", other.Name, "link", "del", "v1")
			},
			// The kernel sets v0 down, flushes, then deletes it: the
			// flush may be compared before the deletion is notified.
			causeObject: event.ObjectLink, causeOp: event.OpDelete, orOp: event.OpReplace, gateway: "192.0.2.2",
		},
		{
			name: "link set down by ioctl",
			act: func(t *testing.T, ns, _ *testnet.Netns) {
				run(t, "ip", "netns", "exec", ns.Name, "ifconfig", "v0", "down")
			},
			causeObject: event.ObjectLink, causeOp: event.OpReplace, gateway: "192.0.2.2", causeComm: "ifconfig",
		},
		{
			name:  "link moved to another namespace",
			setup: func(t *testing.T, ns *testnet.Netns) *testnet.Netns { return bareNetns(t) },
			act: func(t *testing.T, ns, other *testnet.Netns) {
				ns.IP("link", "set", "v0", "netns", other.Name)
			},
			// Tiers 1-2 see it at the link-down notifier: a replace.
			causeObject: event.ObjectLink, causeOp: event.OpDelete, orOp: event.OpReplace, gateway: "192.0.2.2",
		},
		{
			name: "address lifetime expired",
			setup: func(t *testing.T, ns *testnet.Netns) *testnet.Netns {
				ns.IP("addr", "add", "198.18.0.1/24", "dev", "v0", "valid_lft", "600", "preferred_lft", "600")
				return nil
			},
			act: func(t *testing.T, ns, _ *testnet.Netns) {
				// Shortened only now: starting the tracer can take
				// seconds under emulation.
				ns.IP("addr", "change", "198.18.0.1/24", "dev", "v0", "valid_lft", "1", "preferred_lft", "1")
				deadline := time.Now().Add(15 * time.Second)
				for {
					out, _ := exec.Command("ip", "-n", ns.Name, "addr", "show", "dev", "v0").Output()
					if !strings.Contains(string(out), "198.18.0.1") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("198.18.0.1 did not expire within 15 s")
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
			// The kernel removes the routes whose source was the address.
			causeObject: event.ObjectAddr, causeOp: event.OpDelete, gateway: "198.18.0.2", src: "198.18.0.1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := testnet.New(t)
			var other *testnet.Netns
			if tc.setup != nil {
				other = tc.setup(t, ns)
			}
			args := []string{"route", "add", "10.5.0.0/24", "via", tc.gateway, "dev", "v0", "proto", "static"}
			if tc.src != "" {
				args = append(args, "src", tc.src)
			}
			ns.IP(args...)
			s := hookSession(t, ns)
			tc.act(t, ns, other)
			// Tier 3 finds a removal the kernel makes by itself, with no
			// request to wait for, by comparing dumps twice: now and a
			// second later. Tiers 1-2 have its ring record by now (the
			// view's end reads the ring up to here).
			if s.tr.Tier3() {
				time.Sleep(confirmDelay())
			}
			evs := in(s.stop(), ns)

			var found *event.Event
			for i := range evs {
				if evs[i].Dst == netip.MustParsePrefix("10.5.0.0/24") && evs[i].Op == event.OpDelete {
					if found != nil {
						t.Errorf("10.5.0.0/24 reported twice: %s and %s", got(found), got(&evs[i]))
					}
					found = &evs[i]
				}
			}
			if found == nil {
				t.Fatalf("the removal of 10.5.0.0/24 was not reported; got %d events: %v", len(evs), describe(evs))
			}
			if found.Origin != event.OriginKernel || !found.Actor.Kernel || found.Gateway.String() != tc.gateway {
				t.Errorf("got %s, want the kernel's removal of 10.5.0.0/24 via %s", got(found), tc.gateway)
			}
			c := found.Cause
			if !c.Valid || c.Object != tc.causeObject || (c.Op != tc.causeOp && (tc.orOp == 0 || c.Op != tc.orOp)) {
				t.Errorf("cause %+v, want %s %s", c, tc.causeObject, tc.causeOp)
			}
			// Tiers 1-2 take the cause from what the notifier was told
			// (before, they recorded no device: 0).
			if tc.causeObject == event.ObjectLink && c.Ifindex != ns.V0 {
				t.Errorf("cause ifindex %d, want v0 (%d)", c.Ifindex, ns.V0)
			}
			// Tiers 1-2 know the address from its notifier too.
			if tc.causeObject == event.ObjectAddr && (c.Prefix.String() != "198.18.0.1/24" || c.Ifindex != ns.V0) {
				t.Errorf("cause prefix %s, want 198.18.0.1/24", c.Prefix)
			}
			// Before ORIGIN records, the cause of an ioctl's change had
			// no actor in tier 3.
			if tc.causeComm != "" && s.tr.Tier3() && s.tr.NamesIoctls() && (c.Actor.Comm.String() != tc.causeComm || c.Actor.Kernel) {
				t.Errorf("cause actor %+v, want %s", c.Actor, tc.causeComm)
			}
			// Only this namespace's own losses: the ring buffer and the
			// unlistened count see every namespace on the node.
			if l := s.tr.Losses(); l.Overruns != 0 || l.ListenerGaps != 0 {
				t.Errorf("losses %+v, want no overrun and no listener gap", l)
			}
		})
	}
}

// bareNetns is a namespace with no links, for a link to move into.
func bareNetns(t *testing.T) *testnet.Netns {
	n := &testnet.Netns{Name: fmt.Sprintf("rt-bare-%d-%d", os.Getpid(), rand.Uint32())}
	run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	return n
}

// confirmDelay is how long a test waits for the second look at a removal
// whose end cannot be seen (tiers 1-2 need no wait).
func confirmDelay() time.Duration { return tier3.ConfirmDelay + 300*time.Millisecond }

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func describe(evs []event.Event) []string {
	var out []string
	for i := range evs {
		out = append(out, got(&evs[i]).String())
	}
	return out
}

// One sendmsg carrying 200 route deletes that all fail, acks read in as
// many reads as the kernel needs: every failure is reported with its
// errno and actor. Before, the capture stopped at 64 messages and 32 acks
// per read, and the rest vanished while the summary said "0 lost".
func TestBatchOfFailuresAllReported(t *testing.T) {
	skipForcedFIBTier(t)
	ns := testnet.New(t)
	s := startTracer(t, ns)
	if !s.tr.Tier3() {
		// The FIB hooks see only what reaches the FIB: a malformed
		// request (EINVAL) is refused before it does.
		t.Skip("tiers 1-2 do not see requests refused before they reach the FIB; this tests tier 3's capture limits")
	}
	const n = 200
	var batch []byte
	for i := 0; i < n; i++ {
		// The first names a route that does not exist (ESRCH); the rest
		// have a prefix longer than 32 bits (EINVAL).
		dstLen := uint8(33)
		if i == 0 {
			dstLen = 24
		}
		batch = append(batch, nltest.NewMsg(unix.RTM_DELROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK, uint32(1000+i), nlPortid,
			nltest.Rtmsg(unix.AF_INET, dstLen, 0, 0, 254, 0, 0, 0)).Attr(unix.RTA_DST, nltest.IP("10.9.9.0")).Bytes()...)
	}
	acks := sendBatchIn(t, ns, batch, n)
	if acks != n {
		t.Fatalf("read %d acks, want %d", acks, n)
	}
	evs := in(s.stop(), ns)
	errnos := map[int32]int{}
	for i := range evs {
		ev := &evs[i]
		if ev.Object != event.ObjectRoute || ev.Op != event.OpDelete || ev.Errno == 0 {
			continue
		}
		errnos[ev.Errno]++
		if ev.Actor.Tgid != uint32(os.Getpid()) {
			t.Errorf("failure seq %d by pid %d, want this test (%d)", ev.Seq, ev.Actor.Tgid, os.Getpid())
		}
	}
	if errnos[int32(unix.ESRCH)] != 1 || errnos[int32(unix.EINVAL)] != n-1 {
		t.Errorf("failures by errno %v, want 1 ESRCH and %d EINVAL", errnos, n-1)
	}
	if l := s.tr.Losses(); l.Truncated != 0 || l.Unconfirmed != 0 || l.RingRecords != 0 {
		t.Errorf("losses %+v: want nothing truncated, unconfirmed or lost in the ring buffer", l)
	}
}

// sendBatchIn sends one buffer of requests on a new rtnetlink socket in ns
// and reads acks until want have come (or a second passes); it returns
// how many were read.
func sendBatchIn(t *testing.T, ns *testnet.Netns, batch []byte, want int) int {
	t.Helper()
	fd, err := rtnl.SocketIn(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("sending %d bytes: %v", len(batch), err)
	}
	buf := make([]byte, 1<<16)
	acks := 0
	deadline := time.Now().Add(time.Second)
	for acks < want && time.Now().Before(deadline) {
		size, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for rest := buf[:size]; len(rest) > 0; {
			h, _, next, err := rtnl.Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			if h.Type == unix.NLMSG_ERROR {
				acks++
			}
			rest = next
		}
	}
	return acks
}
