package repair

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
	"github.com/routetrace/routetrace/tracer"
)

// harness runs what `routetrace enforce --mode repair` runs: a tracer
// (tier 3 here) whose deletions the test's judge decides, and a repairer
// for those judged would-block.
type harness struct {
	t   *testing.T
	ns  *testnet.Netns
	r   *Repairer
	evs chan seen
}

// seen is an event as emitted, judged and repaired, and when the tracer
// emitted it (before the repair).
type seen struct {
	event.Event
	Emitted time.Time
}

// start snapshots ns, then traces it; judge says which events are
// would-block (the policy's job, not merged yet).
func start(t *testing.T, ns *testnet.Netns, opts Options, judge func(*event.Event) bool) *harness {
	return startTracer(t, ns, opts, tracer.Options{LowLatency: true}, judge)
}

func startTracer(t *testing.T, ns *testnet.Netns, opts Options, topts tracer.Options, judge func(*event.Event) bool) *harness {
	t.Helper()
	opts.Netns = []string{ns.Path}
	r, err := New(opts)
	if err != nil {
		t.Fatalf("starting the repairer: %v", err)
	}
	t.Cleanup(r.Close)
	topts.Netns = []string{ns.Name}
	// As the tracer's tests: vmtest forces each tier, and tier 3's capture.
	topts.Attach, topts.Capture = os.Getenv("ROUTETRACE_ATTACH"), os.Getenv("ROUTETRACE_CAPTURE")
	tr, err := tracer.New(topts)
	if err != nil && (topts.Attach == "fentry" || topts.Attach == "kprobe") {
		tiertest.Refused(t, topts.Attach, err)
	}
	if err != nil {
		t.Fatalf("starting the tracer: %v", err)
	}
	h := &harness{t: t, ns: ns, r: r, evs: make(chan seen, 1<<14)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, func(ev *event.Event) {
			emitted := time.Now()
			if ev.Netns == ns.Inode && judge(ev) {
				r.Deleted(ev)
			}
			select {
			case h.evs <- seen{*ev, emitted}:
			default:
				t.Errorf("event channel full: %v %v", ev.Op, ev.Dst)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		tr.Close()
	})
	return h
}

// next waits for the event in the test's namespace that match accepts.
func (h *harness) next(what string, match func(*event.Event) bool) seen {
	h.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-h.evs:
			if ev.Netns == h.ns.Inode && match(&ev.Event) {
				return ev
			}
		case <-deadline:
			h.t.Fatalf("no event for %s", what)
		}
	}
}

func deleteOf(dst string) func(*event.Event) bool {
	p := netip.MustParsePrefix(dst)
	return func(ev *event.Event) bool { return ev.Op == event.OpDelete && ev.Dst == p }
}

// handle is a netlink handle inside ns, for dumps to compare.
func handle(t testing.TB, ns *testnet.Netns) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// routeOf dumps every table and returns the route to dst in table, if any.
func routeOf(t testing.TB, h *netlink.Handle, dst string, table int) (netlink.Route, bool) {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == dst && r.Table == table {
			return r, true
		}
	}
	return netlink.Route{}, false
}

func ruleOf(t testing.TB, h *netlink.Handle, family, prio int) (netlink.Rule, bool) {
	t.Helper()
	rules, err := h.RuleListFiltered(family, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Priority == prio {
			return r, true
		}
	}
	return netlink.Rule{}, false
}

// diff lists the fields that differ between two values of one struct type,
// as "Field: before -> after".
func diff(before, after any) string {
	b, a := reflect.ValueOf(before), reflect.ValueOf(after)
	var out []string
	for i := range b.NumField() {
		if !reflect.DeepEqual(b.Field(i).Interface(), a.Field(i).Interface()) {
			out = append(out, fmt.Sprintf("%s: %+v -> %+v", b.Type().Field(i).Name, b.Field(i).Interface(), a.Field(i).Interface()))
		}
	}
	return strings.Join(out, "; ")
}
