// Package jaegertest runs a real Jaeger (v2, an OpenTelemetry Collector
// distribution) for tests: its own config file, every port on 127.0.0.1
// and picked free, spans in memory or in Badger under the test's temporary
// directory, and a client of Jaeger's query API to read back what an
// exporter sent. The process is gone when the test ends.
//
// The binary is built from tools/jaeger (its own module: Jaeger's
// dependencies do not build beside the project's otel version) by
// `make jaeger` into ~/.cache/routetrace/bin.
package jaegertest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/servicetest"
)

// Version is the Jaeger release the harness is written against; the
// binary's name carries it so that a bump rebuilds it.
const Version = "v1.76.0"

const (
	// BinaryEnv names the Jaeger binary to run.
	BinaryEnv = "ROUTETRACE_JAEGER"
	// RequireEnv set to 1 turns a missing binary from a skip into a
	// failure: make test-host sets it, so its runs cannot pass by skipping.
	RequireEnv = "ROUTETRACE_REQUIRE_JAEGER"

	startWait = 60 * time.Second
	stopWait  = 10 * time.Second
	// Attempts at Start when a port picked free was taken before Jaeger
	// bound it (another test, another agent).
	portAttempts = 3
)

// Options selects how a Jaeger is run.
type Options struct {
	// Persistent stores spans in Badger under the test's temporary
	// directory instead of in memory, so that they survive Stop, Kill and
	// Restart: the exporter's outage tests need the spans sent before the
	// outage to still be there after it.
	Persistent bool
}

// Jaeger is a running Jaeger. Its addresses stay the same across Restart.
type Jaeger struct {
	// OTLPGRPC and OTLPHTTP are the OTLP receiver's addresses (host:port),
	// what an exporter's endpoint is set to (the HTTP one without a path:
	// exporters add /v1/traces).
	OTLPGRPC, OTLPHTTP string
	// QueryURL is the query service's base URL (http://127.0.0.1:port),
	// the UI and the /api endpoints.
	QueryURL string
	// StartTime is how long the last Start or Restart took until Jaeger
	// was ready.
	StartTime time.Duration

	t          testing.TB
	dir        string // the test's temporary directory: config, log, storage
	configPath string
	opts       Options
	ports      ports
	client     *http.Client
	proc       servicetest.Process
	starts     int
}

// ports are those Jaeger listens on, all on 127.0.0.1.
type ports struct {
	otlpGRPC, otlpHTTP, queryHTTP, queryGRPC, healthHTTP, healthGRPC int
}

// Binary returns the path of the Jaeger binary: $ROUTETRACE_JAEGER, else
// the one make jaeger builds. It fails when that file does not exist.
func Binary() (string, error) {
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache directory for the Jaeger binary (set %s): %w", BinaryEnv, err)
		}
		bin = filepath.Join(cache, "routetrace", "bin", "jaeger-"+Version)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no Jaeger binary at %s (run 'make jaeger', or set %s): %w", bin, BinaryEnv, err)
	}
	return bin, nil
}

// Start runs a Jaeger for t and waits until it is ready. Without the
// binary it skips t, or fails it when ROUTETRACE_REQUIRE_JAEGER=1. Jaeger
// is stopped, and its log shown if t failed, when t ends.
func Start(t testing.TB, opts Options) *Jaeger {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v (%s=1 makes this a failure, not a skip)", err, RequireEnv)
		}
		t.Skip(err)
	}
	j := &Jaeger{
		t:    t,
		dir:  t.TempDir(), // removed after the cleanup below has stopped Jaeger
		opts: opts,
		// No client-wide timeout: a 10k-span trace takes a while to
		// encode; callers bound calls with their context.
		client: &http.Client{},
	}
	j.configPath = filepath.Join(j.dir, "config.yaml")
	j.proc = servicetest.Process{Name: "jaeger", Bin: bin, Dir: j.dir, LogPath: filepath.Join(j.dir, "jaeger.log"), Logf: t.Logf}
	t.Cleanup(j.cleanup)

	servicetest.StartOnFreePorts(t, "jaeger", portAttempts, func() error {
		if err := j.pickPorts(); err != nil {
			return err
		}
		return j.writeConfig()
	}, j.start)
	t.Logf("jaeger %s: ready in %v, OTLP gRPC %s, OTLP HTTP %s, query %s, storage %s",
		Version, j.StartTime.Round(time.Millisecond), j.OTLPGRPC, j.OTLPHTTP, j.QueryURL, j.storageName())
	return j
}

func (j *Jaeger) storageName() string {
	if j.opts.Persistent {
		return "badger in " + filepath.Join(j.dir, "badger")
	}
	return "memory"
}

// Restart starts Jaeger again after Stop or Kill, on the same ports and
// with the same storage, as an exporter's collector comes back after an
// outage. It fails t when Jaeger is still running or does not come up.
func (j *Jaeger) Restart(t testing.TB) {
	t.Helper()
	if j.proc.Running() {
		t.Fatal("jaeger: Restart while Jaeger runs: call Stop or Kill first")
	}
	if err := j.start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("jaeger: restarted in %v", j.StartTime.Round(time.Millisecond))
}

// Stop ends Jaeger as an operator would: SIGTERM, so that it flushes its
// storage, and SIGKILL if it is still there after 10 s.
func (j *Jaeger) Stop() { j.stop(syscall.SIGTERM) }

// Kill ends Jaeger with SIGKILL, as a crash or an OOM kill would.
func (j *Jaeger) Kill() { j.stop(syscall.SIGKILL) }

func (j *Jaeger) stop(sig syscall.Signal) { j.proc.Stop(sig, stopWait) }

func (j *Jaeger) cleanup() {
	j.Stop()
	if j.t.Failed() {
		j.t.Logf("%s", j.proc.LogTail(200))
	}
}

// pickPorts takes six free ports on 127.0.0.1: each is found by
// listening on port 0, and all are held until the last is found so that
// they differ, then released for Jaeger to bind.
func (j *Jaeger) pickPorts() error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ps [6]int
	for i := range ps {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("finding a free port on 127.0.0.1 for Jaeger: %w", err)
		}
		ls = append(ls, l)
		ps[i] = l.Addr().(*net.TCPAddr).Port
	}
	j.ports = ports{otlpGRPC: ps[0], otlpHTTP: ps[1], queryHTTP: ps[2], queryGRPC: ps[3], healthHTTP: ps[4], healthGRPC: ps[5]}
	j.OTLPGRPC = fmt.Sprintf("127.0.0.1:%d", j.ports.otlpGRPC)
	j.OTLPHTTP = fmt.Sprintf("127.0.0.1:%d", j.ports.otlpHTTP)
	j.QueryURL = fmt.Sprintf("http://127.0.0.1:%d", j.ports.queryHTTP)
	j.proc.HealthURL = fmt.Sprintf("http://127.0.0.1:%d/status", j.ports.healthHTTP)
	return nil
}

// writeConfig writes Jaeger's whole configuration: without one, Jaeger
// listens on every interface and on a dozen fixed ports (4317, 16686,
// 8888, ...), which collide between tests and with a collector on the host.
func (j *Jaeger) writeConfig() error {
	var storage string
	if j.opts.Persistent {
		keys := filepath.Join(j.dir, "badger", "keys")
		values := filepath.Join(j.dir, "badger", "values")
		for _, d := range []string{keys, values} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("creating Jaeger's badger directory: %w", err)
			}
		}
		// ephemeral: false keeps the files; a SIGKILL loses nothing
		// either, since Badger's write-ahead log is in the page cache
		// (consistency: true would fsync each span, too slow for 10k).
		storage = fmt.Sprintf(`        badger:
          directories:
            keys: %q
            values: %q
          ephemeral: false`, keys, values)
	} else {
		storage = `        memory:
          max_traces: 1000000`
	}
	config := fmt.Sprintf(`# Written by internal/jaegertest: everything on 127.0.0.1, ports picked free.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      # No batch processor: a span is stored as soon as it is received, so
      # a test reads it back without waiting for a batch timeout.
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    # Jaeger's own metrics would be served on :8888 by default.
    metrics:
      level: none
    logs:
      level: info

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[1]d
      status:
        enabled: true
        path: /status
    # The gRPC health service is on by default, on 13132: "grpc: null"
    # does not turn it off (v1.76), so it gets a port of its own too.
    grpc:
      endpoint: 127.0.0.1:%[7]d

  jaeger_query:
    storage:
      traces: store
    http:
      endpoint: 127.0.0.1:%[2]d
    grpc:
      endpoint: 127.0.0.1:%[3]d
    # Tracing on would make Jaeger send its own spans over OTLP, to
    # whatever listens on localhost:4317.
    enable_tracing: false

  jaeger_storage:
    backends:
      store:
%[4]s

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[5]d
      http:
        endpoint: 127.0.0.1:%[6]d

exporters:
  jaeger_storage_exporter:
    trace_storage: store
`, j.ports.healthHTTP, j.ports.queryHTTP, j.ports.queryGRPC, storage, j.ports.otlpGRPC, j.ports.otlpHTTP, j.ports.healthGRPC)
	if err := os.WriteFile(j.configPath, []byte(config), 0o644); err != nil {
		return fmt.Errorf("writing Jaeger's config: %w", err)
	}
	return nil
}

// start runs the binary and waits until /status answers 200 while the
// process started here is alive.
func (j *Jaeger) start() error {
	j.starts++
	took, err := j.proc.Start([]string{"--config=file:" + j.configPath}, fmt.Sprintf("jaegertest: start %d", j.starts), startWait)
	if err != nil {
		return err
	}
	j.StartTime = took
	return nil
}
