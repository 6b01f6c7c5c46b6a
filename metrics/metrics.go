// Package metrics counts routetrace's changes and losses through the
// OpenTelemetry metrics SDK and serves them in the Prometheus text format
// at http://ADDR/metrics (--metrics-addr, 127.0.0.1:9464 by default; GET /
// answers with a one-line pointer). The registry and the meter provider
// are private: nothing else in the process adds series to them, and otel's
// global provider is left alone.
//
// Instruments are named the OpenTelemetry way ("routetrace.changes", unit
// "{change}") and the Prometheus exporter renders them the Prometheus way
// (otlptranslator.UnderscoreEscapingWithSuffixes, set explicitly): dots
// become underscores, counters get "_total", units in braces are dropped
// and others become a suffix ("By" → "_bytes", "s" → "_seconds").
//
//	| Metric | Type | Labels | Meaning |
//	|---|---|---|---|
//	| routetrace_changes_total | counter | object, op, actor, errno, origin | Changes to the routing state reported, failed attempts included (errno not "ok"). A flush (op="flush") counts once however many routes it removed. |
//	| routetrace_actors_folded_total | counter | | Distinct actors counted as actor="other" because the actor label's bound (MaxActors, default 256) was reached. Exact for the first 16×MaxActors folded names, a floor after. |
//	| routetrace_lost_total | counter | reason | What may have been missed, by reason: the exit summary's loss counters (ring_records, overruns, truncated, unconfirmed, evicted, read_errors, listener_gaps, unlistened, kprobe_missed), registered with LossesFunc. |
//	| target_info | gauge | service_name, ... | The OpenTelemetry resource, always 1: service.name="routetrace" unless Options.Resource says more. |
//	| process_*, go_* | | | The process's CPU, memory and file descriptors, and the Go runtime (client_golang's standard collectors). |
//	| promhttp_metric_handler_errors_total | counter | cause | Failed scrapes (the handler's own). |
//
// Labels of routetrace_changes_total:
//   - object: route, rule, nexthop (event.Object.String; "unknown" else)
//   - op: add, replace, delete, flush (event.Op.String)
//   - actor: the systemd unit of the process that made the change
//     ("systemd-networkd.service"), else its command ("bird",
//     "calico-node": a pod's processes have no unit of their own, and pod
//     names would make series per pod), "kernel" for changes the kernel
//     made by itself, "unknown" when the tracer did not capture the
//     requester, "other" past MaxActors distinct actors ("kernel",
//     "unknown" and "other" do not count towards the bound). A command
//     literally named "kernel", "unknown" or "other" shares their series.
//   - errno: "ok", or the error the kernel returned ("EEXIST", "ESRCH";
//     the number for kernel-internal errnos without a name, "524")
//   - origin: netlink, ioctl, kernel (event.Origin.String)
//
// Past 1999 label sets (never in practice: the dimensions are small and
// actors bounded) new ones are counted in a single series labelled
// otel_metric_overflow="true", the SDK's own convention.
//
// Other components report through callbacks read at scrape time, so this
// package imports only event (cmd → metrics → event): CounterFunc for
// cumulative counts (spans delivered, retried, dropped:
// "routetrace.spans.dropped" renders routetrace_spans_dropped_total),
// GaugeFunc and FloatGaugeFunc for levels ("routetrace.journal.size" unit
// "By" renders routetrace_journal_size_bytes, "routetrace.export.lag" unit
// "s" routetrace_export_lag_seconds). Their rows belong in the table above
// when they are wired.
//
// Output choices: no otel_scope_* labels (there is one scope, ours: they
// would only lengthen every series); target_info kept, one series holding
// the resource, so a query can join on the same service the OTLP spans
// name; no exemplars (nothing to point at, and offering each measurement
// costs time).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
)

// DefaultMaxActors is the actor label's default bound.
const DefaultMaxActors = 256

// Actor label values that are not names.
const (
	ActorKernel  = "kernel"
	ActorUnknown = "unknown"
	ActorOther   = "other"
)

// scopeName is the instrumentation scope of every instrument here.
const scopeName = "github.com/routetrace/routetrace/metrics"

// cardinalityLimit is the SDK's bound on the series of one instrument, its
// overflow series included, set explicitly so the environment
// (OTEL_GO_X_CARDINALITY_LIMIT) cannot lower it below maxChangeKeys.
const cardinalityLimit = 2000

// maxChangeKeys bounds the distinct label sets of routetrace_changes_total.
// The real key space is small (a few objects, ops, origins and errnos
// times the bounded actors); past the bound new sets are counted in one
// series labelled otel_metric_overflow="true", as the SDK itself does past
// its limit. One below the SDK's limit, which counts that series: at the
// limit the SDK would fold whichever series the callback reported last,
// an arbitrary one.
const maxChangeKeys = cardinalityLimit - 1

// Options configures Start.
type Options struct {
	// Addr is the --metrics-addr value: "127.0.0.1:9464"; a bare port
	// "9464" or ":9464" binds 127.0.0.1, never every interface unless the
	// host says so ("0.0.0.0:9464"). "" is DefaultAddr.
	Addr   string
	Logger *slog.Logger
	// MaxActors bounds the distinct values of the actor label (0 is
	// DefaultMaxActors; a --metrics-max-actors flag): past it new actors
	// count as "other" and routetrace_actors_folded_total counts them.
	MaxActors int
	// Resource describes this process in target_info; nil is
	// service.name="routetrace". Pass the one the OTLP exporter uses so
	// metrics and spans name the same service.
	Resource *resource.Resource
}

// Metrics is a running endpoint. Its methods are safe for concurrent use;
// Change on a nil *Metrics does nothing, so callers need not check whether
// metrics are enabled.
type Metrics struct {
	log      *slog.Logger
	provider *sdkmetric.MeterProvider
	meter    metric.Meter
	srv      *http.Server
	addr     string
	served   chan struct{} // closed when the server's Serve returns
	close    sync.Once
	closeErr error

	mu sync.Mutex
	// changes holds one counter per distinct label set, read by
	// routetrace.changes's callback at scrape time. Change only adds to an
	// atomic: the SDK's synchronous Counter.Add costs ~285 ns a call even
	// with a cached attribute.WithAttributeSet option (it re-checks every
	// attribute of the set by reflection on each call), ~50 ns this way.
	changes  map[changeKey]*changeCount
	overflow *changeCount
	scratch  []*changeCount // the callback's snapshot, reused
	// actors maps an actor's name (unit or command) to its label: the name
	// itself, or ActorOther once the bound is reached. Folded names are
	// remembered too (up to foldCap) so each is counted once.
	actors    map[string]string
	named     int // actors with a label of their own
	maxActors int
	nfolded   int // folded names remembered
	foldCap   int
	folded    atomic.Uint64

	names map[string]bool // instrument names registered, to refuse twins
}

// changeCount is one series of routetrace_changes_total.
type changeCount struct {
	n     atomic.Uint64
	attrs metric.ObserveOption
}

// changeKey is one label set of routetrace_changes_total in its raw form:
// comparable and cheap to hash, and turned into strings only on a miss.
type changeKey struct {
	object event.Object
	op     event.Op
	origin event.Origin
	errno  int32
	actor  string
}

// Start builds the meter provider and listens on opts.Addr at once, so a
// taken port fails the command before tracing starts.
func Start(opts Options) (*Metrics, error) {
	addr, err := ListenAddr(opts.Addr)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	maxActors := opts.MaxActors
	if maxActors <= 0 {
		maxActors = DefaultMaxActors
	}
	res := opts.Resource
	if res == nil {
		res = resource.NewSchemaless(attribute.String("service.name", "routetrace"))
	}

	// A private registry and provider: nothing else in the process (a
	// library registering in the global default) can add series to ours
	// or see our instruments.
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		// Explicit, since the exporter's default follows a global
		// validation scheme and is announced to change.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, fmt.Errorf("creating the prometheus exporter: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("registering the process collector: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("registering the go collector: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithResource(res),
		// No exemplars: counters have nothing to point at, and offering
		// each measurement to a reservoir costs time on the hot path.
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
		sdkmetric.WithCardinalityLimit(cardinalityLimit),
	)
	m := &Metrics{
		log:      log,
		provider: provider,
		meter:    provider.Meter(scopeName),
		served:   make(chan struct{}),
		changes:  make(map[changeKey]*changeCount),
		overflow: &changeCount{attrs: metric.WithAttributeSet(attribute.NewSet(
			attribute.Bool("otel.metric.overflow", true)))},
		actors:    make(map[string]string),
		maxActors: maxActors,
		// Remember up to 16 folded names per labelled one: enough to
		// count a runaway (session scopes, transient units) exactly for
		// long, bounded so that runaway cannot grow memory for ever.
		foldCap: 16 * maxActors,
		names:   make(map[string]bool),
	}
	if err := m.instruments(); err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, fmt.Errorf("listening for metrics on %s (--metrics-addr): %w", addr, err)
	}
	m.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{log},
		// A failing collector should cost its own series, not the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	}))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "routetrace: metrics are at /metrics")
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		defer close(m.served)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", m.addr, "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+m.addr+"/metrics")
	return m, nil
}

// instruments creates the instruments this package owns.
func (m *Metrics) instruments() error {
	_, err := m.meter.Int64ObservableCounter("routetrace.changes",
		metric.WithUnit("{change}"),
		metric.WithDescription("Changes to the routing state reported, failed attempts included (errno other than ok)."),
		metric.WithInt64Callback(m.observeChanges))
	if err != nil {
		return fmt.Errorf("creating routetrace.changes: %w", err)
	}
	m.names["routetrace.changes"] = true
	return m.CounterFunc("routetrace.actors.folded", "{actor}",
		"Distinct actors counted as actor=\"other\" because the actor label's bound was reached.",
		func(observe func(uint64, ...attribute.KeyValue)) { observe(m.folded.Load()) })
}

// Addr returns the address the endpoint listens on (the port chosen for
// ":0").
func (m *Metrics) Addr() string { return m.addr }

// Change counts one reported change. It is on the hot path (a route flush
// reports ~100k changes a second): once the change's label set has been
// seen it costs a map lookup and an atomic add, and allocates nothing.
func (m *Metrics) Change(ev *event.Event) {
	if m == nil {
		return
	}
	k := changeKey{object: ev.Object, op: ev.Op, origin: ev.Origin, errno: ev.Errno}
	// One key per label set, so no two series render the same labels.
	if k.object.String() == "unknown" {
		k.object = event.ObjectUnknown
	}
	if k.op.String() == "unknown" {
		k.op = event.OpUnknown
	}
	if k.origin.String() == "unknown" {
		k.origin = event.OriginUnknown
	}
	if k.errno < 0 {
		k.errno = -k.errno
	}
	m.mu.Lock()
	k.actor = m.actorLabel(&ev.Actor)
	c, ok := m.changes[k]
	if !ok {
		c = m.newChange(k)
	}
	m.mu.Unlock()
	c.n.Add(1)
}

// newChange adds the series of k. Called with mu held.
func (m *Metrics) newChange(k changeKey) *changeCount {
	if len(m.changes) >= maxChangeKeys {
		return m.overflow
	}
	c := &changeCount{attrs: metric.WithAttributeSet(attribute.NewSet(
		attribute.String("object", k.object.String()),
		attribute.String("op", k.op.String()),
		attribute.String("actor", k.actor),
		attribute.String("errno", errnoLabel(k.errno)),
		attribute.String("origin", k.origin.String()),
	))}
	m.changes[k] = c
	return c
}

// observeChanges reports every series of routetrace_changes_total at a
// scrape. The lock is held only to copy the pointers, so a scrape does not
// stall Change; the copy's slice is reused unless two scrapes overlap.
func (m *Metrics) observeChanges(_ context.Context, o metric.Int64Observer) error {
	m.mu.Lock()
	snap := m.scratch[:0]
	m.scratch = nil // ours until put back: an overlapping scrape makes its own
	for _, c := range m.changes {
		snap = append(snap, c)
	}
	m.mu.Unlock()
	for _, c := range snap {
		o.Observe(clampInt64(c.n.Load()), c.attrs)
	}
	if n := m.overflow.n.Load(); n > 0 {
		o.Observe(clampInt64(n), m.overflow.attrs)
	}
	m.mu.Lock()
	m.scratch = snap[:0]
	m.mu.Unlock()
	return nil
}

// actorLabel names the actor in a bounded set of labels. Called with mu
// held.
func (m *Metrics) actorLabel(a *event.Actor) string {
	switch {
	case a.Kernel:
		return ActorKernel
	case a.Process != nil && a.Process.Unit != "":
		return m.bounded(a.Process.Unit, nil)
	case a.Unknown():
		return ActorUnknown
	}
	comm := a.Comm.Bytes()
	if len(comm) == 0 {
		return ActorUnknown
	}
	return m.bounded("", comm)
}

// bounded returns the label of the actor named name (or comm, when name is
// ""), giving it a label of its own while fewer than maxActors have one.
// Looking up m.actors[string(comm)] does not allocate; only a new name is
// copied.
func (m *Metrics) bounded(name string, comm []byte) string {
	var label string
	var ok bool
	if comm != nil {
		label, ok = m.actors[string(comm)]
	} else {
		label, ok = m.actors[name]
	}
	if ok {
		return label
	}
	if comm != nil {
		name = string(comm)
	}
	if m.named < m.maxActors {
		m.named++
		m.actors[name] = name
		return name
	}
	if m.nfolded < m.foldCap {
		if m.nfolded == 0 {
			m.log.Warn("metrics: too many distinct actors, counting the rest as actor=\"other\"",
				"max_actors", m.maxActors, "first_folded", name)
		}
		m.nfolded++
		m.actors[name] = ActorOther
		m.folded.Add(1)
	} else if m.nfolded == m.foldCap {
		// From here on routetrace_actors_folded_total is a floor: an
		// unremembered name cannot be told from one already counted.
		m.log.Warn("metrics: stopped remembering folded actors, routetrace_actors_folded_total is a floor from now on",
			"remembered", m.foldCap)
		m.nfolded++
	}
	return ActorOther
}

// errnoLabel names an errno the way errno(3) does, "ok" for success.
func errnoLabel(e int32) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(syscall.Errno(e)); n != "" {
		return n
	}
	// Kernel-internal errnos (ENOTSUPP 524, ...) have no name in libc.
	return strconv.Itoa(int(e))
}

// CounterFunc registers a counter read at each scrape (fn calls observe
// once per label set with the current cumulative value): lost ring-buffer
// records, spans delivered, retried and dropped. name is the OpenTelemetry
// name ("routetrace.spans.dropped", unit "{span}" renders
// routetrace_spans_dropped_total).
func (m *Metrics) CounterFunc(name, unit, description string, fn func(observe func(value uint64, attrs ...attribute.KeyValue))) error {
	if err := m.claim(name); err != nil {
		return err
	}
	_, err := m.meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(description),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			fn(func(v uint64, attrs ...attribute.KeyValue) {
				o.Observe(clampInt64(v), metric.WithAttributes(attrs...))
			})
			return nil
		}))
	if err != nil {
		return fmt.Errorf("registering counter %s: %w", name, err)
	}
	return nil
}

// GaugeFunc registers a gauge read at each scrape: the journal's size in
// bytes (unit "By" renders routetrace_journal_size_bytes), the export lag
// in records.
func (m *Metrics) GaugeFunc(name, unit, description string, fn func(observe func(value int64, attrs ...attribute.KeyValue))) error {
	if err := m.claim(name); err != nil {
		return err
	}
	_, err := m.meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(description),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			fn(func(v int64, attrs ...attribute.KeyValue) { o.Observe(v, metric.WithAttributes(attrs...)) })
			return nil
		}))
	if err != nil {
		return fmt.Errorf("registering gauge %s: %w", name, err)
	}
	return nil
}

// FloatGaugeFunc is GaugeFunc for fractional values: the export lag in
// seconds (unit "s" renders _seconds), which Prometheus keeps as a float.
func (m *Metrics) FloatGaugeFunc(name, unit, description string, fn func(observe func(value float64, attrs ...attribute.KeyValue))) error {
	if err := m.claim(name); err != nil {
		return err
	}
	_, err := m.meter.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(description),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			fn(func(v float64, attrs ...attribute.KeyValue) { o.Observe(v, metric.WithAttributes(attrs...)) })
			return nil
		}))
	if err != nil {
		return fmt.Errorf("registering gauge %s: %w", name, err)
	}
	return nil
}

// LossesFunc registers routetrace_lost_total{reason=...}: fn returns the
// tracer's loss counters by reason. This package does not import tracer,
// so cmd maps tracer.Losses' fields to reasons, by convention their names
// in snake case: ring_records, overruns, truncated, unconfirmed, evicted,
// read_errors, listener_gaps, unlistened, kprobe_missed. Report every
// reason, zero included, so a query sees a series from the start.
func (m *Metrics) LossesFunc(fn func() map[string]uint64) error {
	return m.CounterFunc("routetrace.lost", "{event}",
		"What may have been missed, by reason (the exit summary's loss counters).",
		func(observe func(uint64, ...attribute.KeyValue)) {
			for reason, n := range fn() {
				observe(n, attribute.String("reason", reason))
			}
		})
}

// claim refuses a second instrument of the same name: the SDK would hand
// back the first and log a conflict, and the second callback's values would
// be mixed into the first's series.
func (m *Metrics) claim(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names[name] {
		return fmt.Errorf("registering %s: already registered", name)
	}
	m.names[name] = true
	return nil
}

// Close stops the server, closing its listener and connections, and the
// meter provider. It waits for the server to stop, so the port is free
// when it returns.
func (m *Metrics) Close() error {
	m.close.Do(func() {
		err := m.srv.Close()
		<-m.served
		if e := m.provider.Shutdown(context.Background()); e != nil {
			err = errors.Join(err, fmt.Errorf("shutting down the meter provider: %w", e))
		}
		if err != nil {
			m.closeErr = fmt.Errorf("stopping the metrics server on %s: %w", m.addr, err)
		}
	})
	return m.closeErr
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// promLogger routes promhttp's errors (a collector failing during a
// scrape) to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics scrape: " + fmt.Sprint(v...)) }
