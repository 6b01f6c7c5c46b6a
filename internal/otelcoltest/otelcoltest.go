// Package otelcoltest runs a real OpenTelemetry Collector for tests: the
// one built from tools/otelcol (the Collector builder's distribution of
// core v0.165.0 with only the components of deploy/otel-collector/config.yaml)
// by `make otelcol` into ~/.cache/routetrace/bin. It runs a config file as
// written, with MY_POD_IP=127.0.0.1, its listening ports moved to free ones
// and its exporter pointed at the test's backend by --set flags; reads the
// Collector's own Prometheus metrics; and runs its `validate`. The process is
// gone when the test ends, and its log is in the test's log if the test
// failed.
//
// It mirrors internal/jaegertest, which runs the backend the Collector
// forwards to.
package otelcoltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/routetrace/routetrace/internal/servicetest"
)

// Version is the Collector release the binary is built from (core; contrib
// is v0.165.1): the binary's name carries it, as the Makefile's
// OTELCOL_VERSION and tools/otelcol/builder-config.yaml's dist.version do.
const Version = "v0.165.0"

const (
	// BinaryEnv names the Collector binary to run.
	BinaryEnv = "ROUTETRACE_OTELCOL"
	// RequireEnv set to 1 turns a missing binary from a skip into a
	// failure: make test-host sets it, so its runs cannot pass by skipping.
	RequireEnv = "ROUTETRACE_REQUIRE_OTELCOL"

	// Exporter is the ID of the example config's exporter to the tracing
	// backend, whose endpoint Start sets.
	Exporter = "otlp_grpc"

	startWait = 60 * time.Second
	stopWait  = 10 * time.Second
	// Attempts at Start when a port picked free was taken before the
	// Collector bound it (another test, another agent).
	portAttempts = 3
)

// Binary returns the path of the Collector binary: $ROUTETRACE_OTELCOL,
// else the one make otelcol builds. It fails when that file does not exist.
func Binary() (string, error) {
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache directory for the Collector binary (set %s): %w", BinaryEnv, err)
		}
		bin = filepath.Join(cache, "routetrace", "bin", "otelcol-routetrace-"+Version)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no OpenTelemetry Collector binary at %s (run 'make otelcol', or set %s): %w", bin, BinaryEnv, err)
	}
	return bin, nil
}

// Require returns Binary's path, or skips t without it (fails it when
// ROUTETRACE_REQUIRE_OTELCOL=1).
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v (%s=1 makes this a failure, not a skip)", err, RequireEnv)
		}
		t.Skip(err)
	}
	return bin
}

// podIP is MY_POD_IP, the address the example config listens on.
const podIP = "127.0.0.1"

// Validate runs the Collector's `validate` on config with MY_POD_IP set,
// and the --set flags given (key=value, as on the command line). It returns
// what the Collector printed; err is its exit status.
func Validate(bin, config string, sets ...string) (string, error) {
	args := []string{"validate", "--config=file:" + config}
	for _, s := range sets {
		args = append(args, "--set="+s)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MY_POD_IP="+podIP)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Options selects what a Collector runs.
type Options struct {
	// Config is the config file, run as written but for the addresses:
	// it must have the example's health_check extension, otlp receiver
	// (grpc and http), Exporter and a Prometheus pull reader for the
	// Collector's metrics.
	Config string
	// Backend is the host:port Exporter sends to.
	Backend string
}

// Collector is a running Collector.
type Collector struct {
	// OTLPGRPC and OTLPHTTP are the otlp receiver's addresses (host:port),
	// what routetrace's --otlp-endpoint is set to.
	OTLPGRPC, OTLPHTTP string
	// HealthURL is health_check's (200 once the Collector is ready),
	// MetricsURL the Collector's own metrics.
	HealthURL, MetricsURL string
	// StartTime is how long Start took until the Collector was ready.
	StartTime time.Duration

	t     testing.TB
	opts  Options
	ports ports
	proc  servicetest.Process
}

// ports are those the Collector listens on, all on 127.0.0.1.
type ports struct {
	otlpGRPC, otlpHTTP, health, metrics int
}

// Start runs a Collector for t and waits until health_check says it is
// ready. Without the binary it skips t, or fails it when
// ROUTETRACE_REQUIRE_OTELCOL=1. The Collector is stopped, and its log shown
// if t failed, when t ends.
func Start(t testing.TB, opts Options) *Collector {
	t.Helper()
	c := &Collector{t: t, opts: opts}
	dir := t.TempDir() // removed after the cleanup below has stopped it
	c.proc = servicetest.Process{Name: "the Collector", Bin: Require(t), Dir: dir, Env: []string{"MY_POD_IP=" + podIP},
		LogPath: filepath.Join(dir, "otelcol.log"), Logf: t.Logf}
	t.Cleanup(c.cleanup)
	servicetest.StartOnFreePorts(t, "otelcol", portAttempts, c.pickPorts, c.start)
	t.Logf("otelcol %s: ready in %v, config %s, OTLP gRPC %s, OTLP HTTP %s, exporter %s to %s, metrics %s",
		Version, c.StartTime.Round(time.Millisecond), opts.Config, c.OTLPGRPC, c.OTLPHTTP, Exporter, opts.Backend, c.MetricsURL)
	return c
}

// Sets are the --set flags Start gives: the config's listening addresses
// on free ports (still on ${env:MY_POD_IP}, so the config's use of it is
// tested) and Exporter's endpoint. The metrics reader is a list, which
// --set replaces whole.
func (c *Collector) sets() []string {
	return []string{
		fmt.Sprintf("exporters.%s.endpoint=%s", Exporter, c.opts.Backend),
		fmt.Sprintf("extensions.health_check.endpoint=${env:MY_POD_IP}:%d", c.ports.health),
		fmt.Sprintf("receivers.otlp.protocols.grpc.endpoint=${env:MY_POD_IP}:%d", c.ports.otlpGRPC),
		fmt.Sprintf("receivers.otlp.protocols.http.endpoint=${env:MY_POD_IP}:%d", c.ports.otlpHTTP),
		fmt.Sprintf(`service.telemetry.metrics.readers=[{pull: {exporter: {prometheus: {host: "${env:MY_POD_IP}", port: %d}}}}]`, c.ports.metrics),
	}
}

// Stop ends the Collector as an operator would: SIGTERM, and SIGKILL if it
// is still there after 10 s.
func (c *Collector) Stop() { c.proc.Stop(syscall.SIGTERM, stopWait) }

func (c *Collector) cleanup() {
	c.Stop()
	if c.t.Failed() {
		c.t.Logf("%s", c.LogTail(200))
	}
}

// pickPorts takes four free ports on 127.0.0.1, all held until the last
// is found so that they differ, then released for the Collector to bind.
func (c *Collector) pickPorts() error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ps [4]int
	for i := range ps {
		l, err := net.Listen("tcp4", podIP+":0")
		if err != nil {
			return fmt.Errorf("finding a free port on %s for the Collector: %w", podIP, err)
		}
		ls = append(ls, l)
		ps[i] = l.Addr().(*net.TCPAddr).Port
	}
	c.ports = ports{otlpGRPC: ps[0], otlpHTTP: ps[1], health: ps[2], metrics: ps[3]}
	c.OTLPGRPC = fmt.Sprintf("%s:%d", podIP, c.ports.otlpGRPC)
	c.OTLPHTTP = fmt.Sprintf("%s:%d", podIP, c.ports.otlpHTTP)
	c.HealthURL = fmt.Sprintf("http://%s:%d/", podIP, c.ports.health)
	c.proc.HealthURL = c.HealthURL
	c.MetricsURL = fmt.Sprintf("http://%s:%d/metrics", podIP, c.ports.metrics)
	return nil
}

// start runs the binary and waits until health_check answers 200 while
// the process started here is alive.
func (c *Collector) start() error {
	args := []string{"--config=file:" + c.opts.Config}
	for _, set := range c.sets() {
		args = append(args, "--set="+set)
	}
	took, err := c.proc.Start(args, "otelcoltest: "+c.proc.Bin+" "+strings.Join(args, " "), startWait)
	if err != nil {
		return err
	}
	c.StartTime = took
	return nil
}

// ErrNoMetric is Metric's error for a family the Collector does not serve
// (yet: a counter appears once something counted).
var ErrNoMetric = errors.New("no such metric")

// Metric sums the samples of the Collector's metric family name, as
// Prometheus shows it (v0.165.0 has no _total on counters:
// otelcol_exporter_sent_spans), whose labels include those given. A family
// not there is ErrNoMetric, naming those there; a series not there sums to 0.
func (c *Collector) Metric(ctx context.Context, name string, labels map[string]string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.MetricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the Collector's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading the Collector's metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parsing the Collector's metrics: %w", err)
	}
	if families[name] == nil {
		var names []string
		for n := range families {
			names = append(names, n)
		}
		slices.Sort(names)
		return 0, fmt.Errorf("%w: %s (the Collector has %s)", ErrNoMetric, name, strings.Join(names, ", "))
	}
	var sum float64
	for _, m := range families[name].GetMetric() {
		if hasLabels(m, labels) {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Untyped != nil:
				sum += m.Untyped.GetValue()
			}
		}
	}
	return sum, nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// Log is everything the Collector has logged.
func (c *Collector) Log() string { return c.proc.Log() }

// LogTail is the last n lines of the Collector's log, with a heading.
func (c *Collector) LogTail(n int) string { return c.proc.LogTail(n) }
