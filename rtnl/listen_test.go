package rtnl

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: CAP_NET_ADMIN to create a network namespace")
	}
}

// newNetns creates a named network namespace that the test deletes.
func newNetns(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "rtnl-test-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	return ns
}

// ipIn runs ip(8) in the namespace ns.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"-n", ns}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(cmd.Args, " "), err, out)
	}
}

// ipBatch runs ip -batch in ns with the given commands, one a line.
func ipBatch(t *testing.T, ns string, lines []string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
}

// addVeth gives ns a veth pair v0/v1, both up, with addresses on v0, and
// returns v0's index. Nothing leaves the namespace.
func addVeth(t *testing.T, ns string) uint32 {
	t.Helper()
	ipIn(t, ns, "link", "set", "lo", "up")
	ipIn(t, ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ipIn(t, ns, "link", "set", "v0", "up")
	ipIn(t, ns, "link", "set", "v1", "up")
	ipIn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "v0")
	ipIn(t, ns, "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad")
	links, err := Links("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	for idx, name := range links {
		if name == "v0" {
			return idx
		}
	}
	t.Fatalf("v0 not among links %v", links)
	return 0
}

// errNothingQueued is pollUntil's error when its deadline passed.
var errNothingQueued = errors.New("no notification queued before the deadline")

// pollUntil polls l until a datagram is queued, Poll fails (ErrOverrun,
// os.ErrClosed after Close), or the deadline passes (zero: never). It
// sleeps a millisecond between empty polls, as a test can afford.
func pollUntil(l *Listener, buf []byte, deadline time.Time) (int, error) {
	for {
		n, err := l.Poll(buf)
		if n > 0 || err != nil {
			return n, err
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return 0, errNothingQueued
		}
		time.Sleep(time.Millisecond)
	}
}

type note struct {
	h    Header
	ev   event.Event
	down bool // LinkDown
}

// collect polls and decodes notifications until the listener closes.
// The returned stop closes the listener and waits for the reader.
func collect(t *testing.T, l *Listener) (<-chan note, func()) {
	ch := make(chan note, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			n, err := pollUntil(l, buf, time.Time{})
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, ErrOverrun) {
				t.Errorf("notifications dropped")
				continue
			}
			if err != nil {
				t.Errorf("Poll: %v", err)
				return
			}
			for rest := buf[:n]; len(rest) > 0; {
				var (
					h   Header
					msg []byte
				)
				h, msg, rest, err = Next(rest)
				if err != nil {
					t.Errorf("Next: %v", err)
					break
				}
				var nt note
				if err := Decode(h, msg, &nt.ev); err != nil {
					if err != ErrUnknownType {
						t.Errorf("Decode type %d: %v", h.Type, err)
					}
					continue
				}
				nt.h = h
				nt.down = h.Type == rtmNewLink && LinkDown(msg)
				ch <- nt
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return ch, stop
}

// expect returns the first notification that match accepts.
func expect(t *testing.T, ch <-chan note, what string, match func(*note) bool) note {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n, ok := <-ch:
			if !ok {
				t.Fatalf("%s: listener closed", what)
			}
			if match(&n) {
				t.Logf("%s: flags %#x seq %d portid %d", what, n.h.Flags, n.h.Seq, n.h.Portid)
				return n
			}
		case <-deadline:
			t.Fatalf("%s: no notification within 5s", what)
		}
	}
}

// checkEvent compares a notification with want, after checking that it
// names its requester: the kernel copies the request's portid and seq.
func checkEvent(t *testing.T, what string, n note, want event.Event) {
	t.Helper()
	got := n.ev
	if got.Portid == 0 || got.Seq == 0 {
		t.Errorf("%s: portid %d seq %d, want both non-zero", what, got.Portid, got.Seq)
	}
	got.Portid, got.Seq = 0, 0
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestNotifications(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	path := "/run/netns/" + ns
	l, err := ListenPolled(path, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	self, err := NetnsInode("")
	if err != nil {
		t.Fatal(err)
	}
	if l.Netns() != uint32(st.Ino) || l.Netns() == self {
		t.Errorf("Netns() = %d, want %d (ours is %d)", l.Netns(), st.Ino, self)
	}
	ch, _ := collect(t, l)

	oif := addVeth(t, ns)
	isRoute := func(op event.Op, dst string) func(*note) bool {
		return func(n *note) bool {
			return n.ev.Object == event.ObjectRoute && n.ev.Op == op && n.ev.Dst == netip.MustParsePrefix(dst)
		}
	}

	route4 := event.Event{Object: event.ObjectRoute, Family: event.FamilyInet,
		Dst: pfx("198.51.100.0/24"), Gateway: addr("192.0.2.2"), Table: 100, Protocol: 4,
		Type: 1, Priority: 77, Oif: oif}

	ipIn(t, ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	want := route4
	want.Op = event.OpAdd
	checkEvent(t, "route add", expect(t, ch, "route add", isRoute(event.OpAdd, "198.51.100.0/24")), want)

	ipIn(t, ns, "route", "replace", "198.51.100.0/24", "via", "192.0.2.3", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	want = route4
	want.Op, want.Gateway = event.OpReplace, addr("192.0.2.3")
	checkEvent(t, "route replace", expect(t, ch, "route replace", isRoute(event.OpReplace, "198.51.100.0/24")), want)

	ipIn(t, ns, "route", "del", "198.51.100.0/24", "via", "192.0.2.3", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	want.Op = event.OpDelete
	checkEvent(t, "route del", expect(t, ch, "route del", isRoute(event.OpDelete, "198.51.100.0/24")), want)

	ipIn(t, ns, "-6", "route", "add", "2001:db8:1::/64", "dev", "v0", "table", "100")
	checkEvent(t, "ipv6 route add", expect(t, ch, "ipv6 route add", isRoute(event.OpAdd, "2001:db8:1::/64")),
		event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: event.FamilyInet6,
			Dst: pfx("2001:db8:1::/64"), Table: 100, Protocol: 3, Type: 1, Priority: 1024, Oif: oif})

	ipIn(t, ns, "-6", "route", "replace", "2001:db8:1::/64", "via", "2001:db8::2", "dev", "v0", "table", "100")
	checkEvent(t, "ipv6 route replace", expect(t, ch, "ipv6 route replace", isRoute(event.OpReplace, "2001:db8:1::/64")),
		event.Event{Op: event.OpReplace, Object: event.ObjectRoute, Family: event.FamilyInet6,
			Dst: pfx("2001:db8:1::/64"), Gateway: addr("2001:db8::2"), Table: 100, Protocol: 3, Type: 1,
			Priority: 1024, Oif: oif})

	ipIn(t, ns, "rule", "add", "pref", "512", "from", "10.244.1.5", "lookup", "100")
	n := expect(t, ch, "rule add", func(n *note) bool { return n.ev.Object == event.ObjectRule && n.ev.Priority == 512 })
	checkEvent(t, "rule add", n, event.Event{Op: event.OpAdd, Object: event.ObjectRule, Family: event.FamilyInet,
		Src: pfx("10.244.1.5/32"), Table: 100, Priority: 512, Action: 1})

	ipIn(t, ns, "nexthop", "add", "id", "5", "via", "192.0.2.2", "dev", "v0")
	n = expect(t, ch, "nexthop add", func(n *note) bool { return n.ev.Object == event.ObjectNexthop && n.ev.NexthopID == 5 })
	checkEvent(t, "nexthop add", n, event.Event{Op: event.OpAdd, Object: event.ObjectNexthop, Family: event.FamilyInet,
		Gateway: addr("192.0.2.2"), Scope: 253, Oif: oif, NexthopID: 5})

	ipIn(t, ns, "route", "add", "198.51.100.128/25", "nhid", "5", "table", "100")
	checkEvent(t, "route by nhid", expect(t, ch, "route by nhid", isRoute(event.OpAdd, "198.51.100.128/25")),
		event.Event{Op: event.OpAdd, Object: event.ObjectRoute, Family: event.FamilyInet,
			Dst: pfx("198.51.100.128/25"), Gateway: addr("192.0.2.2"), Table: 100, Protocol: 3, Type: 1,
			Oif: oif, NexthopID: 5})

	ipIn(t, ns, "link", "set", "v1", "down")
	n = expect(t, ch, "link down", func(n *note) bool { return n.ev.Object == event.ObjectLink && n.ev.Dev == name("v1") && n.down })
	if n.ev.Op != event.OpAdd || n.ev.Oif == oif || n.ev.Oif == 0 {
		t.Errorf("link down: %+v", n.ev)
	}
}

// Close ends a polling loop running in another goroutine: its next Poll
// returns os.ErrClosed. The caller's own namespace needs no privilege.
func TestCloseEndsPolling(t *testing.T) {
	l, err := ListenPolled("", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := pollUntil(l, buf, time.Time{}); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Poll after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still polling 5s after Close")
	}
	if _, err := l.Poll(make([]byte, 100)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Poll on a closed listener: %v", err)
	}
	if _, err := l.Portid(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Portid on a closed listener: %v", err)
	}
	if err := l.RequestRouteDump(unix.AF_INET, 1); !errors.Is(err, os.ErrClosed) {
		t.Errorf("RequestRouteDump on a closed listener: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestListenBadNetns(t *testing.T) {
	if _, err := ListenPolled("/nonexistent/netns", 0); err == nil {
		t.Fatal("ListenPolled in a missing netns succeeded")
	}
}

func routeLines(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("route add 2001:db8:5::%x/128 dev v0 table 200", i+1)
	}
	return lines
}

// A receive buffer too small for a burst makes Poll report ErrOverrun,
// and the listener keeps working afterwards.
func TestOverrun(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	addVeth(t, ns)
	l, err := ListenPolled("/run/netns/"+ns, 1) // the kernel rounds up to its minimum
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Waiting for good fails the test instead of hanging it.
	deadline := time.Now().Add(10 * time.Second)
	ipBatch(t, ns, routeLines(500))

	buf := make([]byte, 64<<10)
	overruns := 0
	for range 1000 {
		_, err := pollUntil(l, buf, deadline)
		if errors.Is(err, ErrOverrun) {
			overruns++
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if overruns == 0 {
		t.Fatal("no ErrOverrun after 500 unread notifications")
	}
	// The kernel keeps dropping until the queue has been emptied once
	// (NETLINK_S_CONGESTED): drain it, then check a new change arrives.
	// The buffer grows first so that the kernel's own notifications
	// (IPv6 DAD ending) cannot overrun it again meanwhile.
	if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20); err != nil {
		t.Errorf("growing receive buffer: %v", err)
	}
	for {
		if _, _, err := unix.Recvfrom(l.fd, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	ipIn(t, ns, "route", "add", "198.51.100.0/24", "dev", "v0", "table", "201")
	for {
		n, err := pollUntil(l, buf, deadline)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for rest := buf[:n]; len(rest) > 0; {
			h, msg, r, err := Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = r
			var ev event.Event
			if Decode(h, msg, &ev) == nil && ev.Table == 201 {
				found = true
			}
		}
		if found {
			break
		}
	}
}

// In steady state a Poll that receives costs no allocation.
func TestPollAllocs(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	addVeth(t, ns)
	l, err := ListenPolled("/run/netns/"+ns, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Each route is one notification datagram, all queued before the
	// batch exits: enough for AllocsPerRun's runs and its warm-up.
	ipBatch(t, ns, routeLines(300))
	buf := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(200, func() {
		n, err := l.Poll(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("Poll found nothing queued: fewer notifications than routes added")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Poll, want 0", allocs)
	}
}

// TestListenPolled: a polled listener returns 0 while nothing is queued,
// then the notification of a change, and os.ErrClosed after Close.
func TestListenPolled(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	v0 := addVeth(t, ns)
	l, err := ListenPolled("/run/netns/"+ns, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if n, err := l.Poll(buf); n != 0 || err != nil {
		t.Fatalf("Poll on an idle socket = %d, %v; want 0, nil", n, err)
	}
	ipIn(t, ns, "route", "add", "198.51.100.0/24", "dev", "v0", "table", "100", "proto", "static")

	var ev event.Event
	for deadline := time.Now().Add(5 * time.Second); ; {
		n, err := l.Poll(buf)
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		if n > 0 {
			h, msg, _, err := Next(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
			if err := Decode(h, msg, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Object == event.ObjectRoute {
				break
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatal("no route notification within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	if ev.Op != event.OpAdd || ev.Dst.String() != "198.51.100.0/24" || ev.Table != 100 || ev.Oif != v0 || ev.Protocol != 4 {
		t.Errorf("got %v %v table %d oif %d proto %d; want add 198.51.100.0/24 table 100 oif %d proto 4",
			ev.Op, ev.Dst, ev.Table, ev.Oif, ev.Protocol, v0)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Poll(buf); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Poll after Close: %v, want os.ErrClosed", err)
	}
}
