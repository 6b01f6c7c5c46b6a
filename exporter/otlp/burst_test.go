package otlp

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"bytes"
	"encoding/hex"
	"fmt"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/routetrace/routetrace/event"
)

var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

func networkd() event.Actor {
	a := event.Actor{Pid: 412, Tgid: 412, PPid: 1, UID: 998, Cookie: 1,
		Process: &event.Process{Exe: "/usr/lib/systemd/systemd-networkd", Cmdline: []string{"/usr/lib/systemd/systemd-networkd"},
			Cgroup: "/system.slice/systemd-networkd.service", Unit: "systemd-networkd.service"}}
	a.Comm.Set("systemd-network")
	a.PComm.Set("systemd")
	return a
}

func routeDel(at time.Duration, dst string, actor event.Actor) *event.Event {
	ev := &event.Event{Time: t0.Add(at), Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Origin: event.OriginNetlink, Attach: event.AttachTracepoint, Dst: netip.MustParsePrefix(dst), Table: 254,
		Protocol: 4, Scope: 253, Type: 1, Oif: 3, Netns: 4026531840, Portid: 1, Seq: 7, Actor: actor}
	ev.Dev.Set("nd0")
	return ev
}

func kernelDel(at time.Duration, dst string, cause event.Actor) *event.Event {
	ev := &event.Event{Time: t0.Add(at), Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet6,
		Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathNotification,
		Dst: netip.MustParsePrefix(dst), Table: 254, Protocol: 2, Netns: 4026531840,
		Actor: event.Actor{Kernel: true},
		Cause: event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete, Ifindex: 3,
			Prefix: netip.MustParsePrefix("fd00:5::1/64"), Actor: cause}}
	return ev
}

func testGrouper(maxChildren int) *grouper {
	return newGrouper(groupOptions{Quiet: time.Second, Reorder: 2 * time.Second, MaxChildren: maxChildren}, [16]byte{1})
}

func attrs(s *span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[kv.Key] = anyString(kv.Value)
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return fmt.Sprint(v)
}

func start(s *span) time.Time { return time.Unix(0, int64(s.StartTimeUnixNano)).UTC() }
func end(s *span) time.Time   { return time.Unix(0, int64(s.EndTimeUnixNano)).UTC() }

func byName(spans []*span, name string) []*span {
	var out []*span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// A networkd restart: three route deletions, one failing, and two IPv6
// routes the kernel removed when networkd deleted an address; a second
// burst 5 s later. The first trace is one tree under networkd's root.
func TestGrouperBurstTree(t *testing.T) {
	g := testGrouper(1000)
	nd := networkd()
	evs := []*event.Event{
		routeDel(0, "10.244.1.0/24", nd),
		routeDel(200*time.Millisecond, "10.244.2.0/24", nd),
		kernelDel(250*time.Millisecond, "fd00:5::/64", nd),
		// Arrives after a later change: joins by time, not arrival.
		routeDel(100*time.Millisecond, "10.244.3.0/24", nd),
		kernelDel(260*time.Millisecond, "fd00:6::/64", nd),
	}
	evs[1].Errno = 3
	for i, ev := range evs {
		g.add(uint64(i+1), ev)
	}
	if spans := g.take(); len(spans) != 5 {
		t.Fatalf("before the burst closes: %d spans, want the 5 changes", len(spans))
	}
	g.add(6, routeDel(5*time.Second, "10.244.9.0/24", nd)) // past quiet+reorder: the first burst closes
	spans := g.take()
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
	}
	want := []string{"route delete", "address delete", "systemd-networkd.service routing change"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("spans when the first burst closed: %q, want %q", names, want)
	}
	cause, root := spans[1], spans[2]
	if len(root.ParentSpanId) != 0 {
		t.Fatal("the root has a parent")
	}
	if !bytes.Equal(cause.ParentSpanId, root.SpanId) || !bytes.Equal(cause.TraceId, root.TraceId) {
		t.Fatal("the address deletion is not under the root")
	}
	ra := attrs(root)
	for k, v := range map[string]string{
		"routetrace.burst.changes": "5", "routetrace.burst.errors": "1", "routetrace.burst.kernel_removals": "2",
		"routetrace.burst.count.route.delete": "5", "routetrace.burst.errno.ESRCH": "1", "routetrace.burst.aggregated": "0",
		"process.pid": "412", "process.executable.name": "systemd-networkd", "routetrace.actor.unit": "systemd-networkd.service",
		"process.linux.cgroup": "/system.slice/systemd-networkd.service", "routetrace.burst.first_seq": "1",
	} {
		if ra[k] != v {
			t.Errorf("root %s = %q, want %q", k, ra[k], v)
		}
	}
	if _, ok := ra["process.command_args"]; ok {
		t.Error("process.command_args sent without --otlp-command-args")
	}
	if !start(root).Equal(t0) || !end(root).Equal(t0.Add(260*time.Millisecond)) {
		t.Errorf("root spans %v..%v", start(root), end(root))
	}
	ca := attrs(cause)
	if ca["routetrace.cause.address"] != "fd00:5::1/64" || ca["routetrace.burst.kernel_removals"] != "2" || ca["process.pid"] != "412" {
		t.Errorf("cause attributes %v", ca)
	}
	if !start(cause).Equal(t0.Add(250*time.Millisecond)) || !end(cause).Equal(t0.Add(260*time.Millisecond)) {
		t.Errorf("cause spans %v..%v", start(cause), end(cause))
	}

	// The five changes of the first burst, sent before it closed: rebuild
	// them to check parents, attributes and status.
	g2 := testGrouper(1000)
	for i, ev := range evs {
		g2.add(uint64(i+1), ev)
	}
	changes := g2.take()
	for i, s := range changes {
		if !bytes.Equal(s.TraceId, root.TraceId) {
			t.Fatalf("change %d in another trace", i)
		}
		wantParent := root.SpanId
		if evs[i].Origin == event.OriginKernel {
			wantParent = cause.SpanId
		}
		if !bytes.Equal(s.ParentSpanId, wantParent) {
			t.Errorf("change %d (%s): wrong parent", i, s.Name)
		}
		if !start(s).Equal(evs[i].Time) || !end(s).Equal(evs[i].Time) {
			t.Errorf("change %d: %v..%v, want the kernel's time %v", i, start(s), end(s), evs[i].Time)
		}
		if i != 1 && s.Status != nil {
			t.Errorf("change %d has a status: %v", i, s.Status)
		}
	}
	if st := changes[1].Status; st == nil || st.Code != tracepb.Status_STATUS_CODE_ERROR || st.Message != "ESRCH" {
		t.Errorf("failed deletion's status %+v", st)
	}
	a := attrs(changes[0])
	for k, v := range map[string]string{
		"linux.route.destination": "10.244.1.0/24", "linux.route.table": "main", "linux.route.protocol": "static",
		"network.interface.name": "nd0", "routetrace.origin": "netlink", "routetrace.attach": "tracepoint",
		"linux.netlink.portid": "1", "routetrace.journal.seq": "1", "process.pid": "412", "process.parent_pid": "",
		"routetrace.actor.unit": "systemd-networkd.service", "process.executable.name": "systemd-networkd",
		"routetrace.actor.comm": "systemd-network", "linux.family": "inet",
	} {
		if a[k] != v {
			t.Errorf("change %s = %q, want %q", k, a[k], v)
		}
	}
	k := attrs(changes[2])
	if k["routetrace.actor.kernel"] != "true" || k["routetrace.kernel_path"] != "notification" || k["process.pid"] != "" {
		t.Errorf("kernel removal attributes %v", k)
	}
}

// Past the child bound, changes are counted into aggregated spans; the
// root says how many.
func TestGrouperAggregates(t *testing.T) {
	g := testGrouper(3)
	nd := networkd()
	for i := range 10 {
		g.add(uint64(i+1), routeDel(time.Duration(i)*time.Millisecond, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24).String(), nd))
	}
	g.closeAll()
	spans := g.take()
	if n := len(byName(spans, "route delete")); n != 3 {
		t.Fatalf("%d change spans, want 3", n)
	}
	agg := byName(spans, "route delete (aggregated)")
	if len(agg) != 1 {
		t.Fatalf("%d aggregated spans", len(agg))
	}
	a := attrs(agg[0])
	if a["routetrace.aggregated.count"] != "7" || a["routetrace.aggregated.first_destination"] != "10.1.3.0/24" ||
		a["routetrace.aggregated.last_destination"] != "10.1.9.0/24" {
		t.Errorf("aggregated %v", a)
	}
	root := byName(spans, "systemd-networkd.service routing change")[0]
	if r := attrs(root); r["routetrace.burst.aggregated"] != "7" || r["routetrace.burst.changes"] != "10" {
		t.Errorf("root %v", r)
	}
}

// A restart from the saved state sends exactly the spans an uninterrupted
// run would have, with the same IDs.
func TestGrouperStateContinues(t *testing.T) {
	nd := networkd()
	var evs []*event.Event
	for i := range 6 {
		evs = append(evs, routeDel(time.Duration(i)*300*time.Millisecond, "10.9.0.0/16", nd))
	}
	evs = append(evs, routeDel(10*time.Second, "10.9.0.0/16", nd))
	whole := testGrouper(1000)
	for i, ev := range evs {
		whole.add(uint64(i+1), ev)
	}
	whole.closeAll()
	want := ids(whole.take())

	first := testGrouper(1000)
	for i, ev := range evs[:3] {
		first.add(uint64(i+1), ev)
	}
	got := ids(first.take())
	st, err := first.state()
	if err != nil {
		t.Fatal(err)
	}
	second := testGrouper(1000)
	if err := second.restore(st); err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs[3:] {
		second.add(uint64(i+4), ev)
	}
	second.closeAll()
	got = append(got, ids(second.take())...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after a restart:\n%q\nuninterrupted:\n%q", got, want)
	}
	if err := second.restore([]byte(`{"version":9}`)); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("a future state: %v", err)
	}
}

func ids(spans []*span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+" "+hex.EncodeToString(s.TraceId)+"/"+hex.EncodeToString(s.SpanId)+"<"+hex.EncodeToString(s.ParentSpanId))
	}
	slices.Sort(out)
	return out
}

// A process whose executable path the kernel could not read (a deleted
// file, another mount) still names its unit and pod on its change spans.
func TestActorBriefWithoutExe(t *testing.T) {
	a := newAttributer(false)
	ac := networkd()
	ac.Process.Exe = ""
	ac.Process.Container = &event.Container{Name: "calico-node", Pod: &event.Pod{Name: "calico-node-x", Namespace: "kube-system"}}
	got := map[string]string{}
	for _, kv := range a.actorBrief(nil, &ac) {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{"process.pid": "412", "routetrace.actor.comm": "systemd-network", "process.executable.name": "systemd-network",
		"routetrace.actor.unit": "systemd-networkd.service", "k8s.container.name": "calico-node", "k8s.pod.name": "calico-node-x",
		"k8s.namespace.name": "kube-system"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// A judged change's span says the verdict, the protect entry, the reason
// and, for a repair, how long the state was gone.
func TestChangeVerdictAttributes(t *testing.T) {
	a := newAttributer(false)
	ev := &event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet, Table: 254,
		Enforcement: event.Enforcement{Verdict: event.VerdictRepaired, Rule: "protect[0] prefix 10.244.0.0/16 (p.yaml:3)",
			Reason: "after backoff", Missing: 4200 * time.Microsecond}}
	got := map[string]string{}
	for _, kv := range a.change(nil, ev, 1) {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{"routetrace.verdict": "repaired", "routetrace.verdict.protected_by": "protect[0] prefix 10.244.0.0/16 (p.yaml:3)",
		"routetrace.verdict.reason": "after backoff", "routetrace.repair.missing_us": "4200"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	ev.Enforcement = event.Enforcement{}
	for _, kv := range a.change(nil, ev, 1) {
		if strings.HasPrefix(string(kv.Key), "routetrace.verdict") {
			t.Errorf("an unjudged change has %s", kv.Key)
		}
	}
}
