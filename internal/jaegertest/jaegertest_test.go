package jaegertest

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const service = "routetrace-test"

// Fixed in time, at microsecond precision (Jaeger's), and older than the
// query API's default two-day window: Traces must search all time.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

var scope = instrumentation.Scope{Name: "github.com/routetrace/routetrace/exporter", Version: "0.1.0"}

func res() *resource.Resource {
	return resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("host.name", "node-1"),
		attribute.Int64("process.pid", 4242),
	)
}

// The resource as Jaeger returns it: every value a string.
var wantResource = map[string]string{"service.name": service, "host.name": "node-1", "process.pid": "4242"}

func traceID(n uint64) trace.TraceID {
	var id trace.TraceID
	binary.BigEndian.PutUint64(id[:8], 0x5254)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

func spanID(n uint64) trace.SpanID {
	var id trace.SpanID
	binary.BigEndian.PutUint64(id[:], n)
	return id
}

func sc(tid trace.TraceID, sid trace.SpanID) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
}

// routeTrace is a trace of two spans as routetrace would send one: a
// route change (server kind, every attribute type) and its failed repair
// (an error status, a link to another trace).
func routeTrace(tn uint64) ([]sdktrace.ReadOnlySpan, []Span) {
	tid := traceID(tn)
	root, child := spanID(tn<<8|1), spanID(tn<<8|2)
	linked := sc(traceID(tn+1000), spanID(99))
	stubs := tracetest.SpanStubs{
		{
			Name:        "route.delete",
			SpanContext: sc(tid, root),
			SpanKind:    trace.SpanKindServer,
			StartTime:   t0,
			EndTime:     t0.Add(1500 * time.Microsecond),
			Attributes: []attribute.KeyValue{
				attribute.String("route.dst", "10.0.0.0/24"),
				attribute.Int64("route.table", 254),
				attribute.Bool("route.kernel", true),
				attribute.Float64("route.cost", 1.5),
				attribute.StringSlice("route.gateways", []string{"10.0.0.1", "10.0.0.2"}),
				attribute.Int64Slice("route.ifindexes", []int64{2, 3}),
				attribute.Int64("trace.n", int64(tn)),
			},
			Resource:             res(),
			InstrumentationScope: scope,
		},
		{
			Name:                 "route.repair",
			SpanContext:          sc(tid, child),
			Parent:               sc(tid, root),
			SpanKind:             trace.SpanKindClient,
			StartTime:            t0.Add(200 * time.Microsecond),
			EndTime:              t0.Add(900 * time.Microsecond),
			Attributes:           []attribute.KeyValue{attribute.String("route.dst", "10.0.0.0/24")},
			Links:                []sdktrace.Link{{SpanContext: linked}},
			Status:               sdktrace.Status{Code: codes.Error, Description: "netlink: file exists"},
			Resource:             res(),
			InstrumentationScope: scope,
		},
	}
	want := []Span{
		{
			TraceID: tid.String(), SpanID: root.String(), Name: "route.delete", Kind: "server",
			Start: t0, Duration: 1500 * time.Microsecond,
			Attributes: map[string]string{
				"route.dst": "10.0.0.0/24", "route.table": "254", "route.kernel": "true",
				"route.cost": "1.5", "route.gateways": `["10.0.0.1","10.0.0.2"]`, "route.ifindexes": "[2,3]",
				"trace.n": fmt.Sprint(tn),
			},
			Resource: wantResource, Scope: scope.Name, ScopeVersion: scope.Version,
		},
		{
			TraceID: tid.String(), SpanID: child.String(), ParentSpanID: root.String(), Name: "route.repair", Kind: "client",
			Start: t0.Add(200 * time.Microsecond), Duration: 700 * time.Microsecond,
			Attributes: map[string]string{"route.dst": "10.0.0.0/24"},
			Resource:   wantResource, StatusError: true, StatusMessage: "netlink: file exists",
			Scope: scope.Name, ScopeVersion: scope.Version,
			Links: []Link{{TraceID: linked.TraceID().String(), SpanID: linked.SpanID().String()}},
		},
	}
	return stubs.Snapshots(), want
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newExporter(t *testing.T, j *Jaeger, transport string) sdktrace.SpanExporter {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch transport {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(j.OTLPGRPC), otlptracegrpc.WithInsecure())
	case "http":
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(j.OTLPHTTP), otlptracehttp.WithInsecure())
	}
	if err != nil {
		t.Fatalf("creating the OTLP %s exporter: %v", transport, err)
	}
	t.Cleanup(func() { exp.Shutdown(context.Background()) })
	return exp
}

func export(t *testing.T, exp sdktrace.SpanExporter, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	if err := exp.ExportSpans(ctxFor(t, 30*time.Second), spans); err != nil {
		t.Fatalf("exporting %d spans: %v", len(spans), err)
	}
}

func checkSpans(t *testing.T, got, want []Span) {
	t.Helper()
	sortSpans(got)
	sortSpans(want)
	if len(got) != len(want) {
		t.Errorf("got %d spans, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("span %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func sortSpans(s []Span) {
	sort.Slice(s, func(a, b int) bool {
		if s[a].TraceID != s[b].TraceID {
			return s[a].TraceID < s[b].TraceID
		}
		return s[a].SpanID < s[b].SpanID
	})
}

// How long Jaeger takes to be ready, the first time in this process
// (the first test in the file: cold, the binary perhaps out of the page cache) and again (warm). Logged,
// not asserted: it depends on the machine's load.
func TestStartTime(t *testing.T) {
	var times []string
	for _, name := range []string{"first", "second", "persistent"} {
		j := Start(t, Options{Persistent: name == "persistent"})
		times = append(times, fmt.Sprintf("%s %v", name, j.StartTime.Round(time.Millisecond)))
		j.Stop()
	}
	t.Logf("jaeger start times: %s", strings.Join(times, ", "))
}

// Spans sent over each OTLP transport come back with every field.
func TestRoundTrip(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			j := Start(t, Options{})
			exp := newExporter(t, j, transport)
			spans1, want1 := routeTrace(1)
			spans2, want2 := routeTrace(2)
			export(t, exp, append(spans1, spans2...))

			got, err := j.WaitSpans(ctxFor(t, 10*time.Second), service, 4)
			if err != nil {
				t.Fatal(err)
			}
			checkSpans(t, got, append(want1, want2...))

			ctx := ctxFor(t, 10*time.Second)
			svcs, err := j.Services(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(svcs, []string{service}) {
				t.Errorf("services %q, want [%q]", svcs, service)
			}

			// A tag search finds the trace by a span's attribute.
			traces, err := j.Traces(ctx, service, map[string]string{"trace.n": "2"})
			if err != nil {
				t.Fatal(err)
			}
			if len(traces) != 1 || traces[0].ID != traceID(2).String() {
				t.Fatalf("search trace.n=2: got %d traces %+v, want trace %s", len(traces), traces, traceID(2))
			}
			checkSpans(t, traces[0].Spans, want2)

			tr, err := j.Trace(ctx, traceID(1).String())
			if err != nil {
				t.Fatal(err)
			}
			checkSpans(t, tr.Spans, want1)
		})
	}
}

// A trace of 10k spans is stored and read back whole, by search and by ID.
func TestLargeTrace(t *testing.T) {
	const n = 10000
	j := Start(t, Options{})
	exp := newExporter(t, j, "grpc")
	tid := traceID(7)
	var stubs tracetest.SpanStubs
	for i := range n {
		stubs = append(stubs, tracetest.SpanStub{
			Name:        "route.add",
			SpanContext: sc(tid, spanID(uint64(i+1))),
			Parent:      sc(tid, spanID(1)),
			StartTime:   t0.Add(time.Duration(i) * time.Microsecond),
			EndTime:     t0.Add(time.Duration(i+1) * time.Microsecond),
			Attributes:  []attribute.KeyValue{attribute.Int("i", i)},
			Resource:    res(),
		})
	}
	stubs[0].Parent = trace.SpanContext{}
	spans := stubs.Snapshots()
	t1 := time.Now()
	// In batches, as the SDK's batch processor sends them (512 by default);
	// one 10k-span request would pass gRPC's 4 MiB message limit.
	for i := 0; i < n; i += 1000 {
		export(t, exp, spans[i:i+1000])
	}
	exported := time.Since(t1)

	t1 = time.Now()
	got, err := j.WaitSpans(ctxFor(t, 60*time.Second), service, n)
	if err != nil {
		t.Fatal(err)
	}
	searched := time.Since(t1)
	if len(got) != n {
		t.Fatalf("got %d spans, want %d", len(got), n)
	}
	for i, s := range got {
		if s.SpanID != spanID(uint64(i+1)).String() || s.Attributes["i"] != fmt.Sprint(i) || s.Start != t0.Add(time.Duration(i)*time.Microsecond) {
			t.Fatalf("span %d: %+v", i, s)
		}
	}
	t1 = time.Now()
	tr, err := j.Trace(ctxFor(t, 60*time.Second), tid.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Spans) != n {
		t.Fatalf("trace by ID: %d spans, want %d", len(tr.Spans), n)
	}
	t.Logf("%d spans: exported in %v, found by search in %v, read by trace ID in %v", n,
		exported.Round(time.Millisecond), searched.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
}

// With Persistent storage, spans survive a Stop and a Kill, Restart keeps
// the addresses, and one exporter, made once, reaches Jaeger after each
// restart as routetrace's exporter must after a collector outage.
func TestPersistentRestart(t *testing.T) {
	j := Start(t, Options{Persistent: true})
	addrs := []string{j.OTLPGRPC, j.OTLPHTTP, j.QueryURL}
	exp := newExporter(t, j, "grpc")

	var want []Span
	send := func(tn uint64) {
		t.Helper()
		spans, w := routeTrace(tn)
		export(t, exp, spans)
		want = append(want, w...)
		if _, err := j.WaitSpans(ctxFor(t, 10*time.Second), service, len(want)); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	j.Stop()
	if _, err := j.Services(ctxFor(t, 5*time.Second)); err == nil {
		t.Fatal("the query API answers after Stop")
	}
	j.Restart(t)
	send(2)
	j.Kill()
	j.Restart(t)
	send(3)
	if got := []string{j.OTLPGRPC, j.OTLPHTTP, j.QueryURL}; !reflect.DeepEqual(got, addrs) {
		t.Errorf("addresses after Restart %q, want %q", got, addrs)
	}

	// Every span exactly once: raw queries do not deduplicate, so a span
	// stored twice (a replayed log, a re-sent batch) would show twice.
	got, err := j.WaitSpans(ctxFor(t, 10*time.Second), service, len(want))
	if err != nil {
		t.Fatal(err)
	}
	checkSpans(t, got, want)
}

// Without the binary, the error names make jaeger.
func TestBinaryMissing(t *testing.T) {
	t.Setenv(BinaryEnv, "/nonexistent/jaeger")
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "make jaeger") {
		t.Fatalf("Binary() = %v, want an error naming 'make jaeger'", err)
	}
}
