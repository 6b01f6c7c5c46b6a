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
	"github.com/routetrace/routetrace/internal/testnet"
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
		causeOp     event.Op
		gateway     string
		src         string // the route's preferred source, if any
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
			causeObject: event.ObjectLink, causeOp: event.OpDelete, gateway: "192.0.2.2",
		},
		{
			name: "link set down by ioctl",
			act: func(t *testing.T, ns, _ *testnet.Netns) {
				run(t, "ip", "netns", "exec", ns.Name, "ifconfig", "v0", "down")
			},
			causeObject: event.ObjectLink, causeOp: event.OpReplace, gateway: "192.0.2.2",
		},
		{
			name: "link moved to another namespace",
			setup: func(t *testing.T, ns *testnet.Netns) *testnet.Netns { return bareNetns(t) },
			act: func(t *testing.T, ns, other *testnet.Netns) {
				ns.IP("link", "set", "v0", "netns", other.Name)
			},
			causeObject: event.ObjectLink, causeOp: event.OpDelete, gateway: "192.0.2.2",
		},
		{
			name: "address lifetime expired",
			setup: func(t *testing.T, ns *testnet.Netns) *testnet.Netns {
				ns.IP("addr", "add", "198.18.0.1/24", "dev", "v0", "valid_lft", "5", "preferred_lft", "5")
				return nil
			},
			act: func(t *testing.T, ns, _ *testnet.Netns) {
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
			s := startTracer(t, ns)
			tc.act(t, ns, other)
			// A removal the kernel makes by itself, with no request to
			// wait for, is compared twice: now and a second later.
			time.Sleep(confirmDelay())
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
			if !c.Valid || c.Object != tc.causeObject || c.Op != tc.causeOp {
				t.Errorf("cause %+v, want %s %s", c, tc.causeObject, tc.causeOp)
			}
			if tc.causeObject == event.ObjectLink && c.Ifindex != ns.V0 {
				t.Errorf("cause ifindex %d, want v0 (%d)", c.Ifindex, ns.V0)
			}
			if tc.causeObject == event.ObjectAddr && c.Prefix.String() != "198.18.0.1/24" {
				t.Errorf("cause prefix %s, want 198.18.0.1/24", c.Prefix)
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
func confirmDelay() time.Duration { return time.Duration(confirmDelayNs) + 300*time.Millisecond }

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
