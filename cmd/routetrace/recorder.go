package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.opentelemetry.io/otel/attribute"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/exporter/otlp"
	"github.com/routetrace/routetrace/journal"
	"github.com/routetrace/routetrace/metrics"
	"github.com/routetrace/routetrace/tracer"
)

const defaultStateDir = "/var/lib/routetrace"

// stateDirFlag is --state-dir, for trace, history and why.
func stateDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "state-dir", Value: defaultStateDir, EnvVars: []string{"ROUTETRACE_STATE_DIR"},
		Usage: "where the journal of changes (and the export cursor) lives: <state-dir>/journal"}
}

// recorderFlags are trace's flags for the journal, OTLP export and metrics.
func recorderFlags() []cli.Flag {
	return []cli.Flag{
		stateDirFlag(),
		&cli.BoolFlag{Name: "journal", Value: true, Usage: "append every change to the node's journal (read it later with routetrace history and routetrace why). " +
			"When another routetrace holds the journal, this run is not journaled (it says so); --journal=false never journals"},
		&cli.StringFlag{Name: "journal-max-size", Value: "256MiB", Usage: "cap of the journal on disk; the oldest changes are dropped past it (counted and reported if not yet exported)"},
		&cli.StringFlag{Name: "otlp-endpoint", Usage: "send every change as an OpenTelemetry span to this OTLP endpoint: host:port (gRPC, TLS unless --otlp-insecure), " +
			"http://host:4317, or with --otlp-protocol http/protobuf http://host:4318. Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; none: nothing is sent"},
		&cli.StringFlag{Name: "otlp-protocol", Usage: "grpc or http/protobuf (default: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else grpc)"},
		&cli.BoolFlag{Name: "otlp-insecure", Usage: "no TLS to an --otlp-endpoint given as host:port (also OTEL_EXPORTER_OTLP_INSECURE=true)"},
		&cli.BoolFlag{Name: "otlp-command-args", Usage: "add process.command_args (the actor's argv) to spans; off by default: command lines can carry secrets"},
		&cli.DurationFlag{Name: "otlp-quiet", Value: time.Second, Usage: "one actor's changes with gaps shorter than this share a trace (a burst: e.g. one networkd restart)"},
		&cli.DurationFlag{Name: "otlp-reorder", Value: 2 * time.Second, Usage: "how late (by kernel time) a change may arrive and still join its burst"},
		&cli.IntFlag{Name: "otlp-max-spans", Value: 1000, Usage: "spans per burst; past it changes are counted into aggregated spans (a 100k-route flush stays readable)"},
		&cli.IntFlag{Name: "otlp-batch", Value: 1024, Hidden: true, Usage: "spans per OTLP request"},
		&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at this address: a port (9464, bound to 127.0.0.1) or host:port (0.0.0.0:9464 for every interface). Default: off"},
	}
}

// recorder is what a trace run keeps beside its output: the journal, the
// OTLP exporter reading it, and the metrics. Every event the tracer
// reports goes through Write before any filter: the journal is the node's
// record, not the terminal's.
type recorder struct {
	dir      string
	j        *journal.Journal
	w        *eventJournal
	exp      *otlp.Exporter
	m        *metrics.Metrics
	ackStop  chan struct{}
	ackDone  chan struct{}
	endpoint string
}

func newRecorder(c *cli.Context, t func() tracer.Losses) (*recorder, error) {
	r := &recorder{dir: c.String("state-dir")}
	ep := otlp.Endpoint{URL: c.String("otlp-endpoint"), Protocol: c.String("otlp-protocol"), Insecure: c.Bool("otlp-insecure")}
	exporting := ep.Configured()
	if c.Bool("journal") || exporting {
		max, err := parseSize(c.String("journal-max-size"))
		if err != nil {
			return nil, fmt.Errorf("--journal-max-size %q: %w", c.String("journal-max-size"), err)
		}
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return nil, r.journalError(exporting, fmt.Errorf("creating --state-dir %s: %w", r.dir, err))
		}
		r.j, err = journal.Open(journal.Options{Dir: filepath.Join(r.dir, "journal"), MaxBytes: max, Logger: slog.Default()})
		if err != nil {
			if err := r.journalError(exporting, err); err != nil {
				return nil, err
			}
		}
	}
	if r.j != nil {
		r.w = &eventJournal{j: r.j}
	}
	if exporting && r.j != nil {
		exp, err := otlp.New(c.Context, r.j, otlp.Options{
			Endpoint: ep, StateDir: r.dir, CommandArgs: c.Bool("otlp-command-args"),
			Quiet: c.Duration("otlp-quiet"), Reorder: c.Duration("otlp-reorder"), MaxChildren: c.Int("otlp-max-spans"),
			BatchSize: c.Int("otlp-batch"), Version: shortVersion(), NodeName: c.String("node-name"), Logger: slog.Default(),
		})
		if err != nil {
			r.close()
			return nil, fmt.Errorf("OTLP export: %w", err)
		}
		r.exp = exp
		r.endpoint = ep.URL
		if r.endpoint == "" {
			r.endpoint = "from OTEL_EXPORTER_OTLP_*"
		}
		exp.Start()
	} else if r.j != nil {
		// Nothing is exported: every record counts as delivered, so the
		// size cap's "dropped before delivery" counts only what an
		// exporter would have missed.
		r.ackStop, r.ackDone = make(chan struct{}), make(chan struct{})
		go r.ackLoop()
	}
	if addr := c.String("metrics-addr"); addr != "" {
		m, err := metrics.Start(metrics.Options{Addr: addr, Logger: slog.Default()})
		if err != nil {
			r.close()
			return nil, err
		}
		r.m = m
		if err := r.registerMetrics(t); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// journalError decides what a journal that cannot be opened means: fatal
// when spans are to be exported (they are sent from it), a warning
// otherwise (the terminal still shows every change).
func (r *recorder) journalError(exporting bool, err error) error {
	if exporting {
		return fmt.Errorf("OTLP export needs the journal it sends from: %w (use another --state-dir)", err)
	}
	slog.Warn("this run is not journaled: `routetrace history` will not show it", "err", err)
	return nil
}

// Write journals and counts one event; it never fails the run (a full
// disk must not blind the terminal): errors are counted and logged once.
func (r *recorder) Write(ev *event.Event) {
	if r == nil {
		return
	}
	if r.m != nil {
		r.m.Change(ev)
	}
	if r.w != nil {
		r.w.append(ev)
	}
}

func (r *recorder) ackLoop() {
	defer close(r.ackDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-r.ackStop:
			r.j.Flush()
			r.j.Ack(r.j.Stats().LastSeq, nil)
			return
		}
		if seq := r.j.Stats().LastSeq; seq > r.j.Stats().AckedSeq {
			r.j.Ack(seq, nil)
		}
	}
}

func (r *recorder) registerMetrics(losses func() tracer.Losses) error {
	m := r.m
	if losses != nil {
		if err := m.LossesFunc(func() map[string]uint64 {
			l := losses()
			return map[string]uint64{"ring_records": l.RingRecords, "overruns": l.Overruns, "truncated": l.Truncated,
				"unconfirmed": l.Unconfirmed, "evicted": l.Evicted, "read_errors": l.ReadErrors, "listener_gaps": l.ListenerGaps,
				"unlistened": l.Unlistened, "kprobe_missed": l.KprobeMissed}
		}); err != nil {
			return err
		}
	}
	if r.j != nil {
		j := r.j
		if err := m.GaugeFunc("routetrace.journal.size", "By", "bytes of the journal on disk", func(o func(int64, ...attribute.KeyValue)) {
			o(j.Stats().Bytes)
		}); err != nil {
			return err
		}
		if err := m.CounterFunc("routetrace.journal.dropped", "{record}", "changes the journal's size cap deleted before they were exported", func(o func(uint64, ...attribute.KeyValue)) {
			o(j.Stats().DroppedUndelivered)
		}); err != nil {
			return err
		}
		if err := m.CounterFunc("routetrace.journal.write_errors", "{record}", "changes that could not be journaled", func(o func(uint64, ...attribute.KeyValue)) {
			o(r.w.errors.Load())
		}); err != nil {
			return err
		}
	}
	if e := r.exp; e != nil {
		st := e.Stats()
		if err := m.CounterFunc("routetrace.export.spans", "{span}", "spans the OTLP backend accepted", func(o func(uint64, ...attribute.KeyValue)) {
			o(st.Spans.Load())
		}); err != nil {
			return err
		}
		if err := m.CounterFunc("routetrace.export.retries", "{request}", "OTLP requests that failed and were retried from the journal", func(o func(uint64, ...attribute.KeyValue)) {
			o(st.Retries.Load())
		}); err != nil {
			return err
		}
		if err := m.CounterFunc("routetrace.export.rejected", "{span}", "spans the backend refused to keep (OTLP partial success)", func(o func(uint64, ...attribute.KeyValue)) {
			o(st.Rejected.Load())
		}); err != nil {
			return err
		}
		if err := m.CounterFunc("routetrace.export.sdk_errors", "{error}", "other errors the OpenTelemetry SDK reported (logged)", func(o func(uint64, ...attribute.KeyValue)) {
			o(st.SDKErrors.Load())
		}); err != nil {
			return err
		}
		if err := m.CounterFunc("routetrace.export.decode_errors", "{record}", "journal records skipped because they did not decode", func(o func(uint64, ...attribute.KeyValue)) {
			o(st.DecodeErrors.Load())
		}); err != nil {
			return err
		}
		j := r.j
		if err := m.GaugeFunc("routetrace.export.lag", "{record}", "changes journaled and not yet acknowledged by the OTLP backend", func(o func(int64, ...attribute.KeyValue)) {
			o(int64(j.Stats().LastSeq - st.Acked.Load()))
		}); err != nil {
			return err
		}
	}
	return nil
}

// close stops the exporter (sending what it can), the journal and the
// metrics endpoint, in that order.
func (r *recorder) close() {
	if r == nil {
		return
	}
	if r.j != nil {
		if err := r.j.Flush(); err != nil {
			slog.Warn("flushing the journal", "err", err)
		}
	}
	if r.exp != nil {
		if err := r.exp.Close(); err != nil {
			slog.Warn("OTLP export ended with an error", "err", err)
		}
	}
	if r.ackStop != nil {
		close(r.ackStop)
		<-r.ackDone
	}
	if r.j != nil {
		if err := r.j.Close(); err != nil {
			slog.Warn("closing the journal", "err", err)
		}
	}
	if r.m != nil {
		r.m.Close()
	}
}

// summary is the stderr line saying where the run's changes went.
func (r *recorder) summary() string {
	if r == nil || r.j == nil {
		return "journal: not journaled"
	}
	st := r.j.Stats()
	s := fmt.Sprintf("journal: %d changes recorded in %s (%s on disk, seq %d-%d)", st.Appended, filepath.Join(r.dir, "journal"),
		formatSize(st.Bytes), st.FirstSeq, st.LastSeq)
	if n := r.w.errors.Load(); n > 0 {
		s += fmt.Sprintf(", %d NOT recorded (write errors)", n)
	}
	if r.exp != nil {
		es := r.exp.Stats()
		s += fmt.Sprintf("\notlp: %d spans sent to %s (%s) in %d requests, %d retried, %d rejected by the backend; %d changes waiting for the backend",
			es.Spans.Load(), r.endpoint, r.exp.Protocol(), es.Batches.Load(), es.Retries.Load(), es.Rejected.Load(), st.LastSeq-es.Acked.Load())
		if st.DroppedUndelivered > 0 {
			s += fmt.Sprintf("; %d dropped by the journal's size cap before export", st.DroppedUndelivered)
		}
		if n := es.DecodeErrors.Load(); n > 0 {
			s += fmt.Sprintf("; %d journal records skipped: they did not decode", n)
		}
		if n := es.SDKErrors.Load(); n > 0 {
			s += fmt.Sprintf("; %d other OpenTelemetry SDK errors (logged)", n)
		}
	}
	return s
}

// parseSize reads 256MiB, 1GiB, 512M, 1048576.
func parseSize(s string) (int64, error) {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a size like 256MiB, 1GiB or a number of bytes")
	}
	mult := map[string]int64{"": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "KB": 1000, "M": 1 << 20, "MiB": 1 << 20, "MB": 1000 * 1000,
		"G": 1 << 30, "GiB": 1 << 30, "GB": 1000 * 1000 * 1000}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q: want KiB, MiB or GiB", unit)
	}
	return n * mult, nil
}

func formatSize(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
}
