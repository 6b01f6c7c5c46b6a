package metrics

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/routetrace/routetrace/event"
)

func start(t *testing.T, opts Options) *Metrics {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// scrape fetches /metrics over HTTP and parses the text format.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + m.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// series returns a family's series as "label=value,..." → value, labels
// sorted by name, so a test compares the whole family at once.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no %s in the scrape; have %v", name, slices.Sorted(maps.Keys(fams)))
	}
	out := make(map[string]float64)
	for _, mt := range f.GetMetric() {
		var ls []string
		for _, l := range mt.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		slices.Sort(ls)
		var v float64
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v = mt.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = mt.GetGauge().GetValue()
		default:
			t.Fatalf("%s: unexpected type %v", name, f.GetType())
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}

func wantSeries(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, help string, want map[string]float64) {
	t.Helper()
	got := series(t, fams, name)
	if !maps.Equal(got, want) {
		t.Errorf("%s:\n got %v\nwant %v", name, got, want)
	}
	if f := fams[name]; f.GetType() != typ || f.GetHelp() != help {
		t.Errorf("%s: type %v help %q, want %v %q", name, f.GetType(), f.GetHelp(), typ, help)
	}
}

func commActor(tgid uint32, comm string) event.Actor {
	a := event.Actor{Tgid: tgid}
	a.Comm.Set(comm)
	return a
}

func TestScrape(t *testing.T) {
	m := start(t, Options{})
	networkd := &event.Process{Unit: "systemd-networkd.service"}
	// A pod's process: no unit of its own, so its command names it.
	calico := &event.Process{ContainerID: strings.Repeat("a", 64),
		Container: &event.Container{Name: "calico-node", Pod: &event.Pod{Name: "calico-node-x7k2p", Namespace: "kube-system"}}}
	calicoActor := commActor(300, "calico-node")
	calicoActor.Process = calico
	feed := []struct {
		ev event.Event
		n  int
	}{
		{event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Origin: event.OriginNetlink,
			Actor: event.Actor{Tgid: 100, Process: networkd}}, 3},
		{event.Event{Object: event.ObjectRoute, Op: event.OpDelete, Origin: event.OriginNetlink,
			Actor: event.Actor{Tgid: 100, Process: networkd}}, 2},
		{event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Origin: event.OriginNetlink,
			Errno: int32(syscall.EEXIST), Actor: commActor(200, "ip")}, 1},
		// A negative errno is the same error.
		{event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Origin: event.OriginNetlink,
			Errno: -int32(syscall.EEXIST), Actor: commActor(200, "ip")}, 1},
		{event.Event{Object: event.ObjectRule, Op: event.OpDelete, Origin: event.OriginNetlink,
			Errno: int32(syscall.ESRCH), Actor: commActor(200, "ip")}, 1},
		{event.Event{Object: event.ObjectRoute, Op: event.OpReplace, Origin: event.OriginIoctl,
			Errno: 524, Actor: commActor(201, "route")}, 1}, // ENOTSUPP: no libc name
		{event.Event{Object: event.ObjectNexthop, Op: event.OpAdd, Origin: event.OriginNetlink,
			Actor: calicoActor}, 4},
		{event.Event{Object: event.ObjectRoute, Op: event.OpFlush, Origin: event.OriginKernel, Count: 1000,
			Actor: event.Actor{Kernel: true}}, 1},
		// A kernel thread's comm does not make it a named actor.
		{event.Event{Object: event.ObjectRoute, Op: event.OpDelete, Origin: event.OriginKernel,
			Actor: event.Actor{Kernel: true, Comm: event.Name{'k', 'w', 'o', 'r', 'k', 'e', 'r'}}}, 2},
		{event.Event{Object: event.ObjectRoute, Op: event.OpDelete, Origin: event.OriginNetlink}, 5}, // unknown actor
		// Out-of-range enums render "unknown" and share one series.
		{event.Event{Object: event.Object(200), Op: event.Op(99), Origin: event.Origin(77), Actor: commActor(1, "x")}, 1},
		{event.Event{Object: event.ObjectUnknown, Op: event.OpUnknown, Origin: event.OriginUnknown, Actor: commActor(1, "x")}, 1},
	}
	for _, f := range feed {
		for range f.n {
			m.Change(&f.ev)
		}
	}

	if err := m.CounterFunc("routetrace.spans.dropped", "{span}", "Spans the exporter gave up on.",
		func(observe func(uint64, ...attribute.KeyValue)) {
			observe(7, attribute.String("reason", "queue_full"))
			observe(2, attribute.String("reason", "rejected"))
		}); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("routetrace.journal.size", "By", "Bytes in the journal.",
		func(observe func(int64, ...attribute.KeyValue)) { observe(4096) }); err != nil {
		t.Fatal(err)
	}
	if err := m.FloatGaugeFunc("routetrace.export.lag", "s", "Age of the oldest record not yet exported.",
		func(observe func(float64, ...attribute.KeyValue)) { observe(1.5) }); err != nil {
		t.Fatal(err)
	}
	losses := map[string]uint64{"ring_records": 12, "overruns": 0, "kprobe_missed": 1 << 63}
	var lossesMu sync.Mutex
	if err := m.LossesFunc(func() map[string]uint64 {
		lossesMu.Lock()
		defer lossesMu.Unlock()
		return maps.Clone(losses)
	}); err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, m)
	const changesHelp = "Changes to the routing state reported, failed attempts included (errno other than ok)."
	wantSeries(t, fams, "routetrace_changes_total", dto.MetricType_COUNTER, changesHelp, map[string]float64{
		"actor=systemd-networkd.service,errno=ok,object=route,op=add,origin=netlink":    3,
		"actor=systemd-networkd.service,errno=ok,object=route,op=delete,origin=netlink": 2,
		"actor=ip,errno=EEXIST,object=route,op=add,origin=netlink":                      2,
		"actor=ip,errno=ESRCH,object=rule,op=delete,origin=netlink":                     1,
		"actor=route,errno=524,object=route,op=replace,origin=ioctl":                    1,
		"actor=calico-node,errno=ok,object=nexthop,op=add,origin=netlink":               4,
		"actor=kernel,errno=ok,object=route,op=flush,origin=kernel":                     1,
		"actor=kernel,errno=ok,object=route,op=delete,origin=kernel":                    2,
		"actor=unknown,errno=ok,object=route,op=delete,origin=netlink":                  5,
		"actor=x,errno=ok,object=unknown,op=unknown,origin=unknown":                     2,
	})
	wantSeries(t, fams, "routetrace_actors_folded_total", dto.MetricType_COUNTER,
		`Distinct actors counted as actor="other" because the actor label's bound was reached.`,
		map[string]float64{"": 0})
	wantSeries(t, fams, "routetrace_spans_dropped_total", dto.MetricType_COUNTER, "Spans the exporter gave up on.",
		map[string]float64{"reason=queue_full": 7, "reason=rejected": 2})
	wantSeries(t, fams, "routetrace_journal_size_bytes", dto.MetricType_GAUGE, "Bytes in the journal.",
		map[string]float64{"": 4096})
	wantSeries(t, fams, "routetrace_export_lag_seconds", dto.MetricType_GAUGE, "Age of the oldest record not yet exported.",
		map[string]float64{"": 1.5})
	// A count past int64 is clamped, not wrapped negative.
	wantSeries(t, fams, "routetrace_lost_total", dto.MetricType_COUNTER,
		"What may have been missed, by reason (the exit summary's loss counters).",
		map[string]float64{"reason=ring_records": 12, "reason=overruns": 0, "reason=kprobe_missed": 1<<63 - 1})
	wantSeries(t, fams, "target_info", dto.MetricType_GAUGE, "Target metadata",
		map[string]float64{"service_name=routetrace": 1})
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
	// No otel_scope_* labels: one scope, they would only lengthen every series.
	for name, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.HasPrefix(l.GetName(), "otel_scope") {
					t.Errorf("%s has label %s", name, l.GetName())
				}
			}
		}
	}

	// Counters read at scrape time follow their source; Change's counts go
	// on from where they were.
	lossesMu.Lock()
	losses["overruns"] = 3
	lossesMu.Unlock()
	m.Change(&feed[0].ev)
	fams = scrape(t, m)
	if got := series(t, fams, "routetrace_lost_total")["reason=overruns"]; got != 3 {
		t.Errorf("overruns after the change: %v, want 3", got)
	}
	if got := series(t, fams, "routetrace_changes_total")["actor=systemd-networkd.service,errno=ok,object=route,op=add,origin=netlink"]; got != 4 {
		t.Errorf("networkd's adds after one more: %v, want 4", got)
	}
}

func TestActorFold(t *testing.T) {
	m := start(t, Options{MaxActors: 2})
	ev := func(a event.Actor) *event.Event {
		return &event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Origin: event.OriginNetlink, Actor: a}
	}
	unit := func(u string) event.Actor { return event.Actor{Tgid: 9, Process: &event.Process{Unit: u}} }
	m.Change(ev(unit("systemd-networkd.service"))) // 1st actor
	m.Change(ev(commActor(10, "bird")))            // 2nd: the bound
	m.Change(ev(event.Actor{Kernel: true}))        // kernel and unknown are not names: never folded
	m.Change(ev(event.Actor{}))
	m.Change(ev(commActor(11, "zebra")))           // folded
	m.Change(ev(unit("session-3.scope")))          // folded
	m.Change(ev(commActor(12, "zebra")))           // folded again, counted once
	m.Change(ev(commActor(13, "bird")))            // still named
	m.Change(ev(unit("systemd-networkd.service"))) // still named
	m.Change(ev(event.Actor{Kernel: true}))

	fams := scrape(t, m)
	wantSeries(t, fams, "routetrace_changes_total", dto.MetricType_COUNTER,
		"Changes to the routing state reported, failed attempts included (errno other than ok).",
		map[string]float64{
			"actor=systemd-networkd.service,errno=ok,object=route,op=add,origin=netlink": 2,
			"actor=bird,errno=ok,object=route,op=add,origin=netlink":                     2,
			"actor=kernel,errno=ok,object=route,op=add,origin=netlink":                   2,
			"actor=unknown,errno=ok,object=route,op=add,origin=netlink":                  1,
			"actor=other,errno=ok,object=route,op=add,origin=netlink":                    3,
		})
	if got := series(t, fams, "routetrace_actors_folded_total")[""]; got != 2 {
		t.Errorf("routetrace_actors_folded_total = %v, want 2 (zebra, session-3.scope)", got)
	}
}

// TestFoldCap: past the remembered folded names the count stops (a floor)
// while the changes are still counted as "other".
func TestFoldCap(t *testing.T) {
	m := start(t, Options{MaxActors: 1}) // remembers 16 folded names
	for i := range 40 {
		m.Change(&event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Actor: commActor(uint32(i+1), fmt.Sprintf("c%d", i))})
	}
	fams := scrape(t, m)
	if got := series(t, fams, "routetrace_actors_folded_total")[""]; got != 16 {
		t.Errorf("routetrace_actors_folded_total = %v, want 16", got)
	}
	if got := series(t, fams, "routetrace_changes_total")["actor=other,errno=ok,object=route,op=add,origin=unknown"]; got != 39 {
		t.Errorf("other = %v, want 39", got)
	}
}

// TestChangeOverflow: past maxChangeKeys label sets, new ones share one
// otel_metric_overflow series rather than growing without bound.
func TestChangeOverflow(t *testing.T) {
	m := start(t, Options{})
	for e := range int32(maxChangeKeys + 10) {
		m.Change(&event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Errno: e, Actor: event.Actor{Kernel: true}})
	}
	got := series(t, scrape(t, m), "routetrace_changes_total")
	if len(got) != maxChangeKeys+1 {
		t.Errorf("%d series, want %d", len(got), maxChangeKeys+1)
	}
	if got["otel_metric_overflow=true"] != 10 {
		t.Errorf("overflow series = %v, want 10", got["otel_metric_overflow=true"])
	}
}

func TestResource(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "routetrace"), attribute.String("service.version", "1.2.3"))
	m := start(t, Options{Resource: res})
	wantSeries(t, scrape(t, m), "target_info", dto.MetricType_GAUGE, "Target metadata",
		map[string]float64{"service_name=routetrace,service_version=1.2.3": 1})
}

func TestRootAndNotFound(t *testing.T) {
	m := start(t, Options{})
	resp, err := http.Get("http://" + m.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "/metrics") || strings.Count(string(body), "\n") != 1 {
		t.Errorf("GET /: %s %q, want 200 and one line pointing at /metrics", resp.Status, body)
	}
	resp, err = http.Get("http://" + m.Addr() + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %s, want 404", resp.Status)
	}
}

func TestRegisterErrors(t *testing.T) {
	m := start(t, Options{})
	noop := func(func(uint64, ...attribute.KeyValue)) {}
	if err := m.CounterFunc("routetrace.x", "", "x", noop); err != nil {
		t.Fatal(err)
	}
	err := m.CounterFunc("routetrace.x", "", "x", noop)
	if err == nil || !strings.Contains(err.Error(), "routetrace.x") {
		t.Errorf("second routetrace.x: %v, want an error naming it", err)
	}
	if err := m.GaugeFunc("routetrace.changes", "", "x", func(func(int64, ...attribute.KeyValue)) {}); err == nil {
		t.Error("a gauge named routetrace.changes was accepted")
	}
	if err := m.CounterFunc("bad name", "", "x", noop); err == nil || !strings.Contains(err.Error(), "bad name") {
		t.Errorf("invalid name: %v, want an error naming it", err)
	}
}

func TestNilChange(t *testing.T) {
	var m *Metrics
	m.Change(&event.Event{}) // metrics disabled: no panic
}

func TestListenAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "127.0.0.1:9464"},
		{"9464", "127.0.0.1:9464"},
		{":9464", "127.0.0.1:9464"},
		{"0", "127.0.0.1:0"},
		{"0.0.0.0:9464", "0.0.0.0:9464"},
		{"[::]:9464", "[::]:9464"},
		{"[::1]:9464", "[::1]:9464"},
		{"localhost:9464", "localhost:9464"},
		{"10.0.0.1:1", "10.0.0.1:1"},
	} {
		got, err := ListenAddr(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"garbage", "host:port", "127.0.0.1", "70000", ":70000", "1.2.3.4:-1", "::1:9464"} {
		got, err := ListenAddr(in)
		if err == nil || !strings.Contains(err.Error(), "--metrics-addr") || !strings.Contains(err.Error(), in) {
			t.Errorf("ListenAddr(%q) = %q, %v; want an error naming --metrics-addr and the value", in, got, err)
		}
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Options{Addr: "garbage"}); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("Start(garbage): %v, want an error naming --metrics-addr", err)
	}
	m := start(t, Options{})
	_, err := Start(Options{Addr: m.Addr(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), m.Addr()) || !strings.Contains(err.Error(), "--metrics-addr") ||
		!errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Start on a taken port: %v, want EADDRINUSE naming %s and --metrics-addr", err, m.Addr())
	}
}

func TestCloseFreesPort(t *testing.T) {
	m, err := Start(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr()
	// Hold a connection open: Close must not wait for the client.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a client connected")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not free after Close: %v", err)
	}
	ln.Close()
	// Counting after Close is harmless (a sink may report while stopping).
	m.Change(&event.Event{Actor: event.Actor{Kernel: true}})
}

// TestConcurrent: changes, scrapes and registrations at once (run with
// -race).
func TestConcurrent(t *testing.T) {
	m := start(t, Options{MaxActors: 4})
	var wg sync.WaitGroup
	const perWorker = 2000
	for w := range 4 {
		wg.Go(func() {
			for i := range perWorker {
				m.Change(&event.Event{Object: event.ObjectRoute, Op: event.OpAdd, Actor: commActor(1, fmt.Sprintf("w%d-%d", w, i%8))})
			}
		})
	}
	for range 3 {
		wg.Go(func() {
			for range 5 {
				scrape(t, m)
			}
		})
	}
	wg.Wait()
	var total float64
	for _, v := range series(t, scrape(t, m), "routetrace_changes_total") {
		total += v
	}
	if total != 4*perWorker {
		t.Errorf("%v changes counted, want %d", total, 4*perWorker)
	}
}
