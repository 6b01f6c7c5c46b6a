package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/jaegertest"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// bench-export against a real Jaeger: what it reports sent is what Jaeger
// holds, span for span. ROUTETRACE_BENCH_EXPORT_N sets the size (the
// README's numbers: 100000).
func TestBenchExport(t *testing.T) {
	tiertest.TierIndependent(t)
	n := 20000
	if s := os.Getenv("ROUTETRACE_BENCH_EXPORT_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(map[string]string{"grpc": "grpc", "http/protobuf": "http"}[protocol], func(t *testing.T) {
			j := jaegertest.Start(t, jaegertest.Options{})
			endpoint := j.OTLPGRPC
			if protocol != "grpc" {
				endpoint = "http://" + j.OTLPHTTP
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(binary, "bench-export", "--n", strconv.Itoa(n), "--otlp-endpoint", endpoint, "--otlp-insecure",
				"--otlp-protocol", protocol, "--output", "json")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("bench-export: %v\n%s", err, stderr.String())
			}
			var passes []exportPass
			if err := json.Unmarshal(stdout.Bytes(), &passes); err != nil {
				t.Fatalf("%v: %s", err, stdout.String())
			}
			var text bytes.Buffer
			printExportBench(&text, passes)
			t.Logf("%s", text.String())
			// The first pass: a span per change and a root per burst of 100;
			// the flush: 1000 changes, one aggregated span, one root.
			want := []uint64{uint64(n + (n+99)/100), 1000 + 1 + 1}
			total := 0
			for i, p := range passes {
				if p.Spans != want[i] || p.Retries != 0 {
					t.Errorf("pass %s: %d spans sent, %d retries; want %d, 0", p.Name, p.Spans, p.Retries, want[i])
				}
				// The exporter and the journal, with the export's batches in
				// flight, within a node agent's 64 MiB (measured 29-37).
				if p.PeakAnonMiB <= 0 || p.PeakAnonMiB > 64 {
					t.Errorf("pass %s: peak anonymous memory %.1f MiB, want at most 64", p.Name, p.PeakAnonMiB)
				}
				total += int(p.Spans)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			spans, err := j.WaitSpans(ctx, "routetrace", total)
			if err != nil {
				t.Fatal(err)
			}
			if len(spans) != total {
				t.Fatalf("Jaeger holds %d spans, bench-export sent %d", len(spans), total)
			}
		})
	}
}
