package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/exporter/otlp"
	"github.com/routetrace/routetrace/journal"
)

func benchExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench-export",
		Usage: "measure the journal's write rate and OTLP export to a backend: spans per second, CPU seconds and RSS per 100k changes",
		Description: "Journals --n synthetic changes shaped like real ones (enriched actors, a route each), then exports\n" +
			"them from the journal as `trace` does, to --otlp-endpoint, timing both. Bursts of --burst changes by\n" +
			"one process each, so every change is a span (no aggregation); a second pass sends one burst of\n" +
			"--n changes, a flush, which the exporter aggregates past --otlp-max-spans. Needs no root and no BPF.\n\n" +
			"Example (a local Jaeger or Collector):\n" +
			"  routetrace bench-export --otlp-endpoint 127.0.0.1:4317 --otlp-insecure --n 100000",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "n", Value: 100000, Usage: "changes per pass"},
			&cli.IntFlag{Name: "burst", Value: 100, Usage: "changes per process in the first pass (one trace each)"},
			&cli.StringFlag{Name: "otlp-endpoint", Usage: "where to send (required): as for trace"},
			&cli.StringFlag{Name: "otlp-protocol", Value: "grpc", Usage: "grpc or http/protobuf"},
			&cli.BoolFlag{Name: "otlp-insecure", Usage: "no TLS to host:port"},
			&cli.IntFlag{Name: "otlp-max-spans", Value: 1000, Usage: "as for trace"},
			&cli.IntFlag{Name: "otlp-batch", Value: 1024, Usage: "spans per request"},
			&cli.StringFlag{Name: "output", Value: "text", Usage: "text or json"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile of the export here"},
		},
		Action: runBenchExport,
	}
}

// exportPass is one pass of bench-export.
type exportPass struct {
	Name           string  `json:"name"`
	Changes        int     `json:"changes"`
	JournalSeconds float64 `json:"journal_s"`
	JournalRate    float64 `json:"journal_records_per_s"`
	JournalMBps    float64 `json:"journal_mb_per_s"`
	Spans          uint64  `json:"spans"`
	Requests       uint64  `json:"requests"`
	Retries        uint64  `json:"retries"`
	ExportSeconds  float64 `json:"export_s"`
	SpansPerSecond float64 `json:"spans_per_s"`
	CPUPer100k     float64 `json:"cpu_s_per_100k_changes"`
	PeakRSSMiB     float64 `json:"peak_rss_mib"`
	// PeakAnonMiB is the most anonymous memory seen while exporting: the
	// exporter's own, without the executable's file pages.
	PeakAnonMiB float64 `json:"peak_anon_mib"`
}

func runBenchExport(c *cli.Context) error {
	n := c.Int("n")
	if n < 1 {
		return fmt.Errorf("--n %d: want at least 1", n)
	}
	if c.String("otlp-endpoint") == "" {
		return fmt.Errorf("--otlp-endpoint: required (e.g. 127.0.0.1:4317 with --otlp-insecure)")
	}
	if f := c.String("cpuprofile"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var passes []exportPass
	for _, pass := range []struct {
		name  string
		burst int
	}{{"spans", max(1, c.Int("burst"))}, {"flush", n}} {
		p, err := benchExportPass(c, pass.name, n, pass.burst)
		if err != nil {
			return err
		}
		passes = append(passes, p)
	}
	if c.String("output") == "json" {
		return json.NewEncoder(c.App.Writer).Encode(passes)
	}
	printExportBench(c.App.Writer, passes)
	return nil
}

func printExportBench(w io.Writer, passes []exportPass) {
	for _, p := range passes {
		fmt.Fprintf(w, "%-6s %d changes: journal %.3fs (%.0f records/s, %.1f MB/s); export %d spans in %d requests (%d retried) in %.3fs = %.0f spans/s; "+
			"%.2f CPU s per 100k changes; peak RSS %.1f MiB (anonymous %.1f)\n",
			p.Name, p.Changes, p.JournalSeconds, p.JournalRate, p.JournalMBps, p.Spans, p.Requests, p.Retries, p.ExportSeconds,
			p.SpansPerSecond, p.CPUPer100k, p.PeakRSSMiB, p.PeakAnonMiB)
	}
}

func benchExportPass(c *cli.Context, name string, n, burst int) (exportPass, error) {
	res := exportPass{Name: name, Changes: n}
	dir, err := os.MkdirTemp("", "routetrace-bench-export")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), MaxBytes: 4 << 30})
	if err != nil {
		return res, err
	}
	defer j.Close()

	cpu0 := cpuSeconds()
	start := time.Now()
	ev := benchExportEvent()
	base := time.Now().Add(-time.Hour)
	w := &eventJournal{j: j}
	for i := range n {
		b := i / burst
		ev.Actor.Pid = 1000 + uint32(b)
		ev.Actor.Tgid = ev.Actor.Pid
		// Bursts 3 s apart, changes 1 ms apart: each burst one trace.
		ev.Time = base.Add(time.Duration(b)*3*time.Second + time.Duration(i%burst)*time.Millisecond)
		ev.Dst = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		w.append(&ev)
	}
	if failed := w.errors.Load(); failed > 0 {
		return res, fmt.Errorf("%d of %d changes could not be journaled", failed, n)
	}
	if err := j.Flush(); err != nil {
		return res, err
	}
	res.JournalSeconds = time.Since(start).Seconds()
	res.JournalRate = float64(n) / res.JournalSeconds
	res.JournalMBps = float64(j.Stats().Bytes) / res.JournalSeconds / 1e6

	exp, err := otlp.New(c.Context, j, otlp.Options{
		Endpoint: otlp.Endpoint{URL: c.String("otlp-endpoint"), Protocol: c.String("otlp-protocol"), Insecure: c.Bool("otlp-insecure")},
		StateDir: dir, MaxChildren: c.Int("otlp-max-spans"), BatchSize: c.Int("otlp-batch"), Version: shortVersion(),
		Logger: slog.Default(),
	})
	if err != nil {
		return res, err
	}
	start = time.Now()
	exp.Start()
	last := j.Stats().LastSeq
	for exp.Stats().Acked.Load() < last {
		res.PeakAnonMiB = max(res.PeakAnonMiB, selfStatusMiB("RssAnon:"))
		time.Sleep(5 * time.Millisecond)
	}
	if err := exp.Close(); err != nil {
		return res, err
	}
	res.ExportSeconds = time.Since(start).Seconds()
	st := exp.Stats()
	res.Spans, res.Requests, res.Retries = st.Spans.Load(), st.Batches.Load(), st.Retries.Load()
	res.SpansPerSecond = float64(res.Spans) / res.ExportSeconds
	res.CPUPer100k = (cpuSeconds() - cpu0) / float64(n) * 100000
	res.PeakRSSMiB = peakRSSMiB()
	if res.Retries > 0 {
		slog.Warn("the backend refused requests during the bench: the rate includes retries", "retries", res.Retries)
	}
	runtime.GC()
	return res, nil
}

// benchExportEvent is a route deletion by an enriched process: the size of
// a real span.
func benchExportEvent() event.Event {
	ev := event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet, Origin: event.OriginNetlink,
		Attach: event.AttachTracepoint, Table: 254, Protocol: 4, Scope: 253, Type: 1, Oif: 3, Netns: 4026531840, Portid: 1, Seq: 7,
		Victim: event.Victim{Link: &event.Link{Name: "cali1234", Kind: "veth", CNI: "calico"}}}
	ev.Dev.Set("cali1234")
	ev.Actor = event.Actor{PPid: 1, UID: 998, Cookie: 1, Netns: 4026531840,
		Process: &event.Process{Exe: "/usr/lib/systemd/systemd-networkd", Cmdline: []string{"/usr/lib/systemd/systemd-networkd"},
			Cgroup: "/system.slice/systemd-networkd.service", CgroupHierarchy: "cgroup2", Unit: "systemd-networkd.service"}}
	ev.Actor.Comm.Set("systemd-network")
	ev.Actor.PComm.Set("systemd")
	return ev
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
