// Package otlp sends routetrace's changes as OpenTelemetry spans, over
// OTLP gRPC or HTTP, from the node's journal: every change is journaled
// first and exported from there, in order, with the journal's cursor
// recording how far the backend acknowledged. A backend that is down or
// slow, or a routetrace restart (kill -9 included), delays spans; it does
// not lose them. The SDK's batch span processor is not used: its queue
// drops spans when full, silently. Batches here block until the backend
// answers, and are retried from the journal until it does.
package otlp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/journal"
)

// Options configures an Exporter.
type Options struct {
	Endpoint Endpoint
	// StateDir keeps the seed of the trace IDs (so that a record sent
	// twice is the same span twice).
	StateDir string
	// CommandArgs adds process.command_args: off by default, as the
	// semantic conventions advise (arguments can hold secrets).
	CommandArgs bool
	// Quiet is the longest gap between one actor's changes in one burst
	// (one trace).
	Quiet time.Duration
	// Reorder is how late (by event time) a change may arrive and still
	// join its burst: tier 3 delivers events up to seconds out of order.
	Reorder time.Duration
	// MaxChildren bounds the spans of one burst; past it, changes are
	// counted into aggregated spans.
	MaxChildren int
	// BatchSize is the spans per OTLP request.
	BatchSize int
	Version   string
	NodeName  string
	Logger    *slog.Logger
}

func (o *Options) defaults() {
	if o.Quiet <= 0 {
		o.Quiet = time.Second
	}
	if o.Reorder <= 0 {
		o.Reorder = 2 * time.Second
	}
	if o.MaxChildren <= 0 {
		o.MaxChildren = 1000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats counts what the exporter did; every field is safe to read at any
// time.
type Stats struct {
	Records      atomic.Uint64 // journal records read
	Spans        atomic.Uint64 // spans the backend accepted
	Batches      atomic.Uint64 // requests the backend accepted
	Retries      atomic.Uint64 // failed requests, each retried
	DecodeErrors atomic.Uint64 // journal records that did not decode (skipped)
	Acked        atomic.Uint64 // the journal seq the backend has everything up to
	OpenBursts   atomic.Int64
	// Rejected counts spans the backend took but refused to keep (OTLP
	// partial success), as the SDK reports them through its error handler.
	Rejected atomic.Uint64
	// SDKErrors counts every other error the SDK reported that way.
	SDKErrors atomic.Uint64
	Down      atomic.Bool // the last request failed
}

// Exporter reads the journal and sends spans.
type Exporter struct {
	opts     Options
	j        *journal.Journal
	client   otlptrace.Client
	resource *resourcepb.Resource
	protocol string
	g        *grouper
	log      *slog.Logger
	stats    Stats

	stopping chan struct{} // closed by Close: drain and end
	done     chan struct{}
	// exportCtx outlives stopping by drainTimeout: a batch in flight when
	// Close is called still reaches a backend that answers.
	exportCtx    context.Context
	exportCancel context.CancelFunc
	runErr       error
	once         sync.Once

	lastSeq   uint64 // the newest record the grouper has seen
	queuedSeq uint64 // the newest record whose spans are queued
	queue     chan batch
	downMu    sync.Mutex    // orders the backend-down and back-up logs
	sent      chan struct{} // closed when the sender has ended
}

// New connects nothing yet (gRPC dials lazily); it reads the cursor and the
// saved bursts, so a bad state file is reported at start.
func New(ctx context.Context, j *journal.Journal, opts Options) (*Exporter, error) {
	opts.defaults()
	client, proto, err := newClient(ctx, opts.Endpoint)
	if err != nil {
		return nil, err
	}
	seed, err := loadSeed(opts.StateDir)
	if err != nil {
		return nil, err
	}
	res, err := NodeResource(opts.Version, opts.NodeName)
	if err != nil {
		return nil, err
	}
	g := newGrouper(groupOptions{Quiet: opts.Quiet, Reorder: opts.Reorder, MaxChildren: opts.MaxChildren, CommandArgs: opts.CommandArgs}, seed)
	acked, state := j.Acked()
	if err := g.restore(state); err != nil {
		// The cursor's seq is still right; only the open bursts are lost:
		// their remaining changes start new traces.
		opts.Logger.Warn("starting the exporter's bursts afresh", "err", err)
	}
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the OTLP client: %w", err)
	}
	e := &Exporter{opts: opts, j: j, client: client, protocol: proto, g: g, log: opts.Logger, resource: protoResource(res),
		stopping: make(chan struct{}), done: make(chan struct{}), lastSeq: acked, queuedSeq: acked,
		queue: make(chan batch, 1), sent: make(chan struct{})}
	e.exportCtx, e.exportCancel = context.WithCancel(context.Background())
	// The SDK reports what it cannot return, OTLP partial success above
	// all (spans the backend accepted and then refused to keep), through
	// its global error handler: counted and logged here, never lost.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(e.sdkError))
	e.stats.Acked.Store(acked)
	return e, nil
}

var rejectedSpans = regexp.MustCompile(`\((\d+) spans? rejected\)`)

func (e *Exporter) sdkError(err error) {
	if m := rejectedSpans.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		e.stats.Rejected.Add(n)
		e.log.Warn("the OTLP backend rejected spans it received", "spans", n, "err", err)
		return
	}
	e.stats.SDKErrors.Add(1)
	e.log.Warn("OpenTelemetry SDK", "err", err)
}

// Protocol is the OTLP protocol in use.
func (e *Exporter) Protocol() string { return e.protocol }

// Stats returns the exporter's counters.
func (e *Exporter) Stats() *Stats { return &e.stats }

// Start runs the export loop in the background until Close.
func (e *Exporter) Start() {
	go e.send(e.exportCtx)
	go func() {
		defer close(e.done)
		e.runErr = e.run()
		close(e.queue)
		<-e.sent
		if waiting := e.lastSeq - e.stats.Acked.Load(); waiting > 0 {
			e.log.Warn("the OTLP backend did not take the last spans before routetrace stopped: they stay in the journal and are sent at the next start",
				"records_waiting", waiting)
		}
	}()
}

// idleWait is how long the loop waits for a record before it treats the
// journal as idle: spans waiting are sent, bursts past their quiet time
// closed.
const idleWait = 200 * time.Millisecond

func (e *Exporter) run() error {
	r, err := e.j.NewReader(e.lastSeq + 1)
	if err != nil {
		return fmt.Errorf("reading the journal for export: %w", err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-e.stopping
		cancel()
	}()
	var (
		ev        event.Event
		lastFlush = time.Now()
		tailSeq   uint64
		// idle is one deadline for many reads: a timer per record would
		// cost more than the record.
		idle struct {
			ctx    context.Context
			cancel context.CancelFunc
		}
		waitEnd = func() {
			if idle.cancel != nil {
				idle.cancel()
			}
			idle.ctx, idle.cancel = nil, nil
		}
	)
	defer waitEnd()
	for {
		if idle.ctx == nil {
			idle.ctx, idle.cancel = context.WithTimeout(ctx, idleWait)
		}
		rec, err := r.Next(idle.ctx)
		switch {
		case err == nil:
			e.consume(rec, &ev)
			// Caught up with the journal: send now rather than at the idle
			// tick (the tail's seq is re-read only on reaching the last one
			// read, not per record).
			caughtUp := false
			if e.lastSeq >= tailSeq {
				tailSeq = e.j.Stats().LastSeq
				caughtUp = e.lastSeq >= tailSeq
			}
			if caughtUp || len(e.g.out) >= e.opts.BatchSize || time.Since(lastFlush) > time.Second {
				if err := e.flush(e.exportCtx); err != nil {
					return e.stop(err)
				}
				lastFlush = time.Now()
			}
			continue
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			waitEnd()
			// Only when every journaled record has been seen may the wall
			// clock close bursts: replaying a backlog, later records may
			// still belong to them.
			if e.lastSeq >= e.j.Stats().LastSeq {
				e.g.advance(time.Now())
			}
			if err := e.flush(e.exportCtx); err != nil {
				return e.stop(err)
			}
			lastFlush = time.Now()
			continue
		case ctx.Err() != nil, errors.Is(err, io.EOF):
			waitEnd()
			return e.drain(r)
		default:
			waitEnd()
			return fmt.Errorf("reading the journal for export: %w", err)
		}
	}
}

// consume decodes one journal record into ev (reused) and groups it. A
// record that does not decode is logged, counted and skipped; it still
// moves the cursor, or it would be read again at every start.
func (e *Exporter) consume(rec journal.Record, ev *event.Event) {
	e.stats.Records.Add(1)
	e.lastSeq = rec.Seq
	if err := event.DecodeBinary(rec.Payload, ev); err != nil {
		e.stats.DecodeErrors.Add(1)
		e.log.Warn("skipping a journal record that does not decode", "seq", rec.Seq, "err", err)
		return
	}
	e.g.add(rec.Seq, ev)
}

func (e *Exporter) stop(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil // Close gave up on the backend: the journal keeps the rest
	}
	return err
}

// drainTimeout bounds the last export at Close when the backend does not
// answer: what is not sent stays in the journal for the next start.
const drainTimeout = 10 * time.Second

// drain sends what the journal holds now, closing every burst, before
// routetrace exits.
func (e *Exporter) drain(r *journal.Reader) error {
	if err := e.j.Flush(); err != nil {
		return fmt.Errorf("flushing the journal: %w", err)
	}
	readCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ev event.Event
	for e.lastSeq < e.j.Stats().LastSeq {
		rec, err := r.Next(readCtx)
		if err != nil {
			break
		}
		e.consume(rec, &ev)
	}
	e.g.closeAll()
	return e.stop(e.flush(e.exportCtx))
}

// batch is spans ready to send, with the journal position and bursts
// they leave behind: once the backend has them, the cursor moves there.
type batch struct {
	spans []*span
	seq   uint64
	state []byte
}

// flush hands the spans waiting to the sender. The sender works on one
// batch while the next is built: building spans and the backend's taking
// them use different cores. It blocks while a batch is already queued,
// which is the back-pressure that keeps memory bounded.
func (e *Exporter) flush(ctx context.Context) error {
	spans := e.g.take()
	if len(spans) == 0 && e.lastSeq == e.queuedSeq {
		return nil
	}
	state, err := e.g.state()
	if err != nil {
		return err
	}
	e.stats.OpenBursts.Store(int64(e.g.openBursts()))
	select {
	case e.queue <- batch{spans: spans, seq: e.lastSeq, state: state}:
		e.queuedSeq = e.lastSeq
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// requestSpans is the spans per OTLP request, parallelRequests how many
// are in flight.
const (
	requestSpans     = 512
	parallelRequests = 2
)

// export sends one request's spans, retrying until the backend takes them
// or ctx ends (false).
func (e *Exporter) export(ctx context.Context, spans []*span, downSince *time.Time) bool {
	req := e.request(spans)
	for attempt := 0; ; attempt++ {
		err := e.client.UploadTraces(ctx, req)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		e.stats.Retries.Add(1)
		e.downMu.Lock()
		if !e.stats.Down.Swap(true) {
			*downSince = time.Now()
		}
		e.downMu.Unlock()
		if attempt%20 == 0 {
			e.log.Warn("the OTLP backend refused spans; retrying, the journal keeps them", "protocol", e.protocol,
				"spans", len(spans), "attempt", attempt+1, "err", err)
		}
		select {
		case <-time.After(backoff(attempt)):
		case <-ctx.Done():
			return false
		}
	}
	e.downMu.Lock()
	if e.stats.Down.Swap(false) {
		e.log.Info("the OTLP backend takes spans again", "after", time.Since(*downSince).Round(time.Millisecond))
	}
	e.downMu.Unlock()
	e.stats.Spans.Add(uint64(len(spans)))
	e.stats.Batches.Add(1)
	return true
}

// send exports the queued batches in order, blocking and retrying each
// until the backend takes it, then moves the journal's cursor past it.
// Once ctx ends (Close gave up on the backend) nothing more is sent or
// acknowledged: the journal keeps it for the next start.
func (e *Exporter) send(ctx context.Context) {
	defer close(e.sent)
	var downSince time.Time
	for b := range e.queue {
		if ctx.Err() != nil {
			continue
		}
		// The batch goes out as requests of requestSpans, two at a time:
		// while the backend takes one, the next is encoded (README,
		// Performance, has the rates measured into a local Jaeger).
		chunks := (len(b.spans) + requestSpans - 1) / requestSpans
		results := make(chan bool, chunks)
		sem := make(chan struct{}, parallelRequests)
		for i := range chunks {
			sem <- struct{}{}
			go func(part []*span) {
				defer func() { <-sem }()
				results <- e.export(ctx, part, &downSince)
			}(b.spans[i*requestSpans : min((i+1)*requestSpans, len(b.spans))])
		}
		ok := true
		for range chunks {
			ok = <-results && ok
		}
		if !ok {
			continue
		}
		if err := e.j.Ack(b.seq, b.state); err != nil {
			e.log.Error("recording the export cursor: spans sent since the last record may be sent again at the next start", "err", err)
			continue
		}
		e.stats.Acked.Store(b.seq)
	}
}

// Close sends what is journaled, for at most drainTimeout when the backend
// is down, and shuts the client down.
func (e *Exporter) Close() error {
	e.once.Do(func() { close(e.stopping) })
	stopTimer := time.AfterFunc(drainTimeout, e.exportCancel)
	<-e.done
	stopTimer.Stop()
	e.exportCancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.client.Stop(ctx); err != nil && e.runErr == nil {
		e.log.Debug("shutting the OTLP client down", "err", err)
	}
	return e.runErr
}

// loadSeed reads the per-node seed of trace IDs, making it on first use.
func loadSeed(stateDir string) ([16]byte, error) {
	var seed [16]byte
	p := filepath.Join(stateDir, "trace-seed")
	b, err := os.ReadFile(p)
	if err == nil && len(b) == len(seed) {
		return [16]byte(b), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return seed, fmt.Errorf("reading %s: %w", p, err)
	}
	rand.Read(seed[:])
	if err := os.WriteFile(p, seed[:], 0o600); err != nil {
		return seed, fmt.Errorf("writing %s (--state-dir): %w", p, err)
	}
	return seed, nil
}
