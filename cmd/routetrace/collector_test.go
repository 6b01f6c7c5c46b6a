package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/jaegertest"
	"github.com/routetrace/routetrace/internal/otelcoltest"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// exampleCollectorConfig is the path of the project's example Collector
// config, the file the tests run as it is.
func exampleCollectorConfig(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../deploy/otel-collector/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the example Collector config: %v", err)
	}
	return p
}

// The example Collector config passes the Collector's own `validate`, so a
// typo fails here with the Collector's message; so does its commented-out
// second exporter for Tempo once uncommented, and a misspelt key is caught.
func TestCollectorConfigValid(t *testing.T) {
	tiertest.TierIndependent(t)
	bin := otelcoltest.Require(t)
	config := exampleCollectorConfig(t)
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)

	t.Run("as-written", func(t *testing.T) {
		if out, err := otelcoltest.Validate(bin, config); err != nil {
			t.Fatalf("otelcol validate --config %s (MY_POD_IP=127.0.0.1): %v\n%s", config, err, out)
		}
	})

	// The Tempo exporter's lines, uncommented, and added to the pipeline
	// as its comment says.
	t.Run("tempo", func(t *testing.T) {
		lines := strings.Split(text, "\n")
		in := false
		for i, l := range lines {
			switch {
			case l == "  # otlp_grpc/tempo:":
				in = true
			case in && !strings.HasPrefix(l, "  #"):
				in = false
			}
			if in {
				lines[i] = strings.Replace(l, "  # ", "  ", 1)
			}
		}
		variant := strings.Join(lines, "\n")
		if n := strings.Count(variant, "exporters: [otlp_grpc]"); n != 1 {
			t.Fatalf("the pipeline's exporters line appears %d times in %s, want once", n, config)
		}
		variant = strings.Replace(variant, "exporters: [otlp_grpc]", "exporters: [otlp_grpc, otlp_grpc/tempo]", 1)
		if !strings.Contains(variant, "\n  otlp_grpc/tempo:\n    endpoint: ") {
			t.Fatalf("no commented-out otlp_grpc/tempo exporter in %s to uncomment", config)
		}
		p := filepath.Join(t.TempDir(), "config-tempo.yaml")
		if err := os.WriteFile(p, []byte(variant), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := otelcoltest.Validate(bin, p); err != nil {
			t.Fatalf("otelcol validate of the Tempo variant: %v\n%s\nthe variant:\n%s", err, out, variant)
		}
	})

	// validate refuses what the Collector would refuse to run.
	t.Run("typo", func(t *testing.T) {
		typo := strings.Replace(text, "send_batch_size:", "send_batch_sise:", 1)
		if typo == text {
			t.Fatalf("no send_batch_size in %s to misspell", config)
		}
		p := filepath.Join(t.TempDir(), "config-typo.yaml")
		if err := os.WriteFile(p, []byte(typo), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := otelcoltest.Validate(bin, p)
		if err == nil || !strings.Contains(out, "send_batch_sise") {
			t.Fatalf("otelcol validate of a config with send_batch_sise: %v, want an error naming the key\n%s", err, out)
		}
	})
}

// routetrace → a real Collector running the example config → Jaeger: a
// route added in a namespace arrives in Jaeger with the attributes
// TestOTLPSpansInJaeger checks when routetrace sends to Jaeger itself, and
// the Collector's own metrics count the spans received from routetrace and
// sent on to the backend: they went through it (routetrace was given only
// the Collector's address).
func TestCollectorForwardsToJaeger(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	otelcoltest.Require(t) // skip before starting Jaeger
	j := jaegertest.Start(t, jaegertest.Options{})
	c := otelcoltest.Start(t, otelcoltest.Options{Config: exampleCollectorConfig(t), Backend: j.OTLPGRPC})
	// A component renamed or a key deprecated in this Collector version
	// shows as a warning at startup: the config should be written for it.
	for _, l := range strings.Split(c.Log(), "\n") {
		if strings.Contains(l, "deprecated") {
			t.Errorf("the Collector warns about the example config: %s", l)
		}
	}

	ns := testnet.New(t)
	p := startTrace(t, ns, "--output", "json", "--otlp-endpoint", c.OTLPGRPC, "--otlp-insecure", "--otlp-protocol", "grpc")
	add := ip(ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
	stdout, stderr := p.stop()
	stopped := time.Now()
	events := parseJSONLines(t, stdout)
	events = events[:len(events)-1] // the summary
	if len(events) != 1 || events[0]["dst"] != "198.51.100.0/24" {
		t.Fatalf("routetrace printed %d changes, want the one route added: %v", len(events), events)
	}
	ev := events[0]
	// The change and its burst's root, acknowledged by the Collector.
	const want = 2
	if !regexp.MustCompile(fmt.Sprintf(`otlp: %d spans sent to \S*%s .*0 rejected by the backend; 0 changes waiting for the backend`,
		want, regexp.QuoteMeta(c.OTLPGRPC))).MatchString(stderr) {
		t.Errorf("stderr does not report %d spans sent to the Collector at %s:\n%s", want, c.OTLPGRPC, stderr)
	}

	// The config's batch processor holds spans up to its 5 s timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spans, err := j.WaitSpans(ctx, "routetrace", want)
	if err != nil {
		t.Fatalf("%v\nthe Collector's counts: %s\nroutetrace stderr:\n%s", err, collectorCounts(c), stderr)
	}
	t.Logf("spans in Jaeger %v after routetrace stopped", time.Since(stopped).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // nothing more arrives
	if spans, _ = j.WaitSpans(ctx, "routetrace", want); len(spans) != want {
		t.Fatalf("%d spans in Jaeger, want %d (the route added and its root)", len(spans), want)
	}
	var root, change jaegertest.Span
	for _, s := range spans {
		if s.ParentSpanID == "" {
			root = s
		} else {
			change = s
		}
		if s.Resource["service.name"] != "routetrace" || s.Resource["os.type"] != "linux" || s.Resource["host.name"] == "" ||
			s.Resource["service.version"] == "" || s.Resource["os.version"] == "" {
			t.Errorf("span %s resource %v", s.Name, s.Resource)
		}
	}
	if root.Name != "ip routing change" || change.ParentSpanID != root.SpanID || change.TraceID != root.TraceID {
		t.Fatalf("spans %q (parent %s) and %q (id %s), want the change under an 'ip routing change' root", change.Name, change.ParentSpanID, root.Name, root.SpanID)
	}
	pid := strconv.Itoa(int(add.pid))
	for k, v := range map[string]string{"process.pid": pid, "routetrace.actor.comm": "ip", "process.parent_pid": strconv.Itoa(os.Getpid()),
		"process.owner": "root", "routetrace.burst.changes": "1", "routetrace.burst.count.route.add": "1"} {
		if root.Attributes[k] != v {
			t.Errorf("root %s = %q, want %q", k, root.Attributes[k], v)
		}
	}
	if change.Name != "route add" || change.StatusError {
		t.Errorf("change span %q error=%v, want route add without error", change.Name, change.StatusError)
	}
	evTime, _ := time.Parse(time.RFC3339Nano, ev["time"].(string))
	if !change.Start.Equal(evTime.Truncate(time.Microsecond)) {
		t.Errorf("change span at %v, event at %v", change.Start, evTime)
	}
	for k, v := range map[string]string{
		"linux.route.destination": "198.51.100.0/24", "linux.route.gateway": "192.0.2.2", "linux.route.table": "100",
		"linux.route.protocol": "static", "linux.route.metric": "77", "network.interface.name": "v0",
		"process.pid": pid, "routetrace.actor.comm": "ip", "process.executable.name": "ip",
		"routetrace.origin": fmt.Sprint(ev["origin"]), "routetrace.attach": fmt.Sprint(ev["attach"]),
		"linux.netns.inode": fmt.Sprint(ev["netns"]), "routetrace.object": "route", "routetrace.operation": "add",
	} {
		if change.Attributes[k] != v {
			t.Errorf("change span %s = %q, want %q", k, change.Attributes[k], v)
		}
	}

	// Through the Collector: its receiver accepted both spans from
	// routetrace and its exporter sent both to Jaeger, none failed (a
	// counter of failures that never counted is not served).
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"otelcol_receiver_accepted_spans", map[string]string{"receiver": "otlp", "transport": "grpc"}, want},
		{"otelcol_receiver_refused_spans", map[string]string{"receiver": "otlp"}, 0},
		{"otelcol_receiver_failed_spans", map[string]string{"receiver": "otlp"}, 0},
		{"otelcol_exporter_sent_spans", map[string]string{"exporter": otelcoltest.Exporter}, want},
		{"otelcol_exporter_send_failed_spans", map[string]string{"exporter": otelcoltest.Exporter}, 0},
	} {
		got, err := c.Metric(ctx, m.name, m.labels)
		if err != nil && !(m.want == 0 && errors.Is(err, otelcoltest.ErrNoMetric)) {
			t.Errorf("the Collector's %s: %v", m.name, err)
			continue
		}
		if got != m.want {
			t.Errorf("the Collector's %s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	t.Logf("the Collector: %s", collectorCounts(c))
}

// collectorCounts says what the Collector received and sent, for a
// failure's message.
func collectorCounts(c *otelcoltest.Collector) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var parts []string
	for _, m := range []struct{ what, name, label, value string }{
		{"accepted from routetrace", "otelcol_receiver_accepted_spans", "receiver", "otlp"},
		{"refused", "otelcol_receiver_refused_spans", "receiver", "otlp"},
		{"sent to the backend", "otelcol_exporter_sent_spans", "exporter", otelcoltest.Exporter},
		{"failed to send", "otelcol_exporter_send_failed_spans", "exporter", otelcoltest.Exporter},
		{"batches queued", "otelcol_exporter_queue_size", "exporter", otelcoltest.Exporter},
	} {
		v, err := c.Metric(ctx, m.name, map[string]string{m.label: m.value})
		switch {
		case errors.Is(err, otelcoltest.ErrNoMetric):
			parts = append(parts, "none "+m.what)
		case err != nil:
			return err.Error()
		default:
			parts = append(parts, fmt.Sprintf("%v %s", v, m.what))
		}
	}
	return strings.Join(parts, ", ")
}
