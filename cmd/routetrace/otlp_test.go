package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/jaegertest"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// otlpArgs sends to j over protocol, without TLS.
func otlpArgs(j *jaegertest.Jaeger, protocol string) []string {
	if protocol == "grpc" {
		return []string{"--otlp-endpoint", j.OTLPGRPC, "--otlp-insecure", "--otlp-protocol", "grpc"}
	}
	return []string{"--otlp-endpoint", "http://" + j.OTLPHTTP, "--otlp-protocol", "http/protobuf"}
}

func spanIndex(spans []jaegertest.Span) map[string]jaegertest.Span {
	m := map[string]jaegertest.Span{}
	for _, s := range spans {
		m[s.SpanID] = s
	}
	return m
}

// Changes made in a namespace come back from Jaeger's query API as spans:
// one trace per process (a burst), its changes as children of a root
// named for it, a failed deletion with an error status, and the routes
// the kernel removed when an address went under a span for that address
// deletion — with exact attributes, over gRPC and over HTTP.
func TestOTLPSpansInJaeger(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			j := jaegertest.Start(t, jaegertest.Options{})
			ns := testnet.New(t)
			state := t.TempDir()
			p := startTrace(t, ns, append([]string{"--output", "json", "--state-dir", state}, otlpArgs(j, protocol)...)...)

			add := ip(ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "metric", "77", "table", "100")
			batch := filepath.Join(t.TempDir(), "batch")
			os.WriteFile(batch, []byte("route add 198.51.101.0/24 dev v0\nroute add 198.51.102.0/24 dev v0\nroute del 198.51.101.0/24 dev v0\n"), 0o644)
			burst := ip(ns, "-batch", batch)
			missing := ipFails(t, ns, "route", "del", "10.9.9.0/24")
			ip(ns, "addr", "add", "203.0.113.1/24", "dev", "v0")
			ip(ns, "route", "add", "198.51.103.0/24", "via", "203.0.113.2", "dev", "v0", "proto", "static")
			time.Sleep(100 * time.Millisecond)
			addrDel := ip(ns, "addr", "del", "203.0.113.1/24", "dev", "v0")
			stdout, stderr := p.stop()
			events := parseJSONLines(t, stdout)
			events = events[:len(events)-1] // the summary

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// Every change is a span; every process one root; the address
			// deletion one more span.
			pids := map[string]bool{}
			for _, ev := range events {
				if pid, ok := ev["actor.pid"]; ok && ev["actor.kernel"] == nil {
					pids[fmt.Sprint(pid)] = true
				}
				if ev["cause.actor.pid"] != nil {
					pids[fmt.Sprint(ev["cause.actor.pid"])] = true
				}
			}
			want := len(events) + len(pids) + 1
			spans, err := j.WaitSpans(ctx, "routetrace", want)
			if err != nil {
				t.Fatalf("%v\nrouteTrace stderr:\n%s", err, stderr)
			}
			time.Sleep(300 * time.Millisecond)
			if spans, _ = j.WaitSpans(ctx, "routetrace", want); len(spans) != want {
				t.Fatalf("%d spans in Jaeger, want %d (%d changes, %d processes, 1 address deletion)", len(spans), want, len(events), len(pids))
			}
			byID := spanIndex(spans)
			roots := map[string]jaegertest.Span{} // by pid
			for _, s := range spans {
				if s.ParentSpanID == "" {
					roots[s.Attributes["process.pid"]] = s
				}
				if s.Resource["service.name"] != "routetrace" || s.Resource["os.type"] != "linux" || s.Resource["host.name"] == "" ||
					s.Resource["service.version"] == "" || s.Resource["os.version"] == "" {
					t.Fatalf("span %s resource %v", s.Name, s.Resource)
				}
			}
			if len(roots) != len(pids) {
				t.Fatalf("%d roots, want one per process (%d)", len(roots), len(pids))
			}
			for pid, r := range roots {
				if r.Name != "ip routing change" && !strings.HasSuffix(r.Name, " routing change") {
					t.Errorf("root of %s named %q", pid, r.Name)
				}
				// The actor in full is on the root, once per burst.
				if r.Attributes["process.parent_pid"] != strconv.Itoa(os.Getpid()) || r.Attributes["process.owner"] != "root" ||
					r.Attributes["process.executable.path"] == "" || r.Attributes["routetrace.actor.comm"] != "ip" {
					t.Errorf("root of %s: %v", pid, r.Attributes)
				}
			}
			// The change spans, by journal order, against trace's own lines.
			var changes []jaegertest.Span
			for _, s := range spans {
				if s.Attributes["routetrace.journal.seq"] != "" {
					changes = append(changes, s)
				}
			}
			slices.SortFunc(changes, func(a, b jaegertest.Span) int {
				x, _ := strconv.Atoi(a.Attributes["routetrace.journal.seq"])
				y, _ := strconv.Atoi(b.Attributes["routetrace.journal.seq"])
				return x - y
			})
			if len(changes) != len(events) {
				t.Fatalf("%d change spans, %d events", len(changes), len(events))
			}
			for i, ev := range events {
				s := changes[i]
				if want := fmt.Sprint(ev["object"], " ", ev["op"]); s.Name != want {
					t.Errorf("span %d named %q, want %q", i, s.Name, want)
				}
				evTime, _ := time.Parse(time.RFC3339Nano, ev["time"].(string))
				if !s.Start.Equal(evTime.Truncate(time.Microsecond)) || s.Duration != 0 {
					t.Errorf("span %d at %v+%v, event at %v", i, s.Start, s.Duration, evTime)
				}
				check := map[string]any{"linux.route.destination": ev["dst"], "routetrace.origin": ev["origin"],
					"routetrace.attach": ev["attach"], "linux.netns.inode": ev["netns"], "linux.errno": ev["error"]}
				if ev["actor.kernel"] == nil {
					check["process.pid"] = ev["actor.pid"]
					check["routetrace.actor.comm"] = "ip"
					check["process.executable.name"] = "ip"
				} else {
					check["routetrace.actor.kernel"] = "true"
				}
				for k, v := range check {
					want := ""
					if v != nil {
						want = fmt.Sprint(v)
					}
					if s.Attributes[k] != want {
						t.Errorf("span %d (%s %v) %s = %q, want %q", i, s.Name, ev["dst"], k, s.Attributes[k], want)
					}
				}
				if s.StatusError != (fmt.Sprint(ev["errno"]) != "0") || (s.StatusError && s.StatusMessage != ev["error"]) {
					t.Errorf("span %d status error=%v %q, event errno %v", i, s.StatusError, s.StatusMessage, ev["errno"])
				}
				parent := byID[s.ParentSpanID]
				if ev["actor.kernel"] == nil {
					if parent.SpanID != roots[fmt.Sprint(ev["actor.pid"])].SpanID {
						t.Errorf("span %d is not under its process's root", i)
					}
				} else if parent.Name != "address delete" || parent.ParentSpanID != roots[strconv.Itoa(int(addrDel.pid))].SpanID {
					t.Errorf("kernel removal %v under %q, want the address deletion under ip %d's root", ev["dst"], parent.Name, addrDel.pid)
				}
			}
			// The batch's three changes are one trace; its root counts them.
			r := roots[strconv.Itoa(int(burst.pid))]
			for k, v := range map[string]string{"routetrace.burst.changes": "3", "routetrace.burst.count.route.add": "2",
				"routetrace.burst.count.route.delete": "1", "routetrace.burst.errors": "0"} {
				if r.Attributes[k] != v {
					t.Errorf("batch root %s = %q, want %q", k, r.Attributes[k], v)
				}
			}
			if r := roots[strconv.Itoa(int(missing.pid))]; r.Attributes["routetrace.burst.errno.ESRCH"] != "1" {
				t.Errorf("failed deletion's root: %v", r.Attributes)
			}
			if r := roots[strconv.Itoa(int(add.pid))]; r.Attributes["routetrace.burst.changes"] != "1" {
				t.Errorf("single add's root: %v", r.Attributes)
			}
			// The address deletion's span, with the routes under it.
			r = roots[strconv.Itoa(int(addrDel.pid))]
			var cause jaegertest.Span
			for _, s := range spans {
				if s.Name == "address delete" {
					cause = s
				}
			}
			if cause.ParentSpanID != r.SpanID || cause.Attributes["routetrace.cause.address"] != "203.0.113.1/24" ||
				cause.Attributes["routetrace.burst.kernel_removals"] != r.Attributes["routetrace.burst.kernel_removals"] ||
				r.Attributes["routetrace.burst.kernel_removals"] == "0" {
				t.Errorf("address deletion span %+v under root %+v", cause, r)
			}
			if !strings.Contains(stderr, fmt.Sprintf("otlp: %d spans sent", want)) {
				t.Errorf("stderr does not report %d spans sent:\n%s", want, stderr)
			}
		})
	}
}

// countChanges counts Jaeger's change spans by their route.
func countChanges(spans []jaegertest.Span) map[string]int {
	m := map[string]int{}
	for _, s := range spans {
		if s.Attributes["routetrace.journal.seq"] != "" {
			m[s.Name+" "+s.Attributes["linux.route.destination"]]++
		}
	}
	return m
}

// An outage: Jaeger stops in the middle of a burst and routes keep
// changing; when it is back every change arrives exactly once. In the
// second run routetrace is also killed (SIGKILL) while Jaeger is down and
// started again on the same state directory.
func TestOTLPOutage(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "backend-down", true: "backend-down-and-kill-9"}[kill], func(t *testing.T) {
			j := jaegertest.Start(t, jaegertest.Options{Persistent: true})
			ns := testnet.New(t)
			state := t.TempDir()
			args := append([]string{"--output", "json", "--state-dir", state}, otlpArgs(j, "grpc")...)
			p := startTrace(t, ns, args...)
			var want []string
			addRoutes := func(from, to int) {
				var b strings.Builder
				for i := from; i < to; i++ {
					fmt.Fprintf(&b, "route add 10.77.%d.0/24 dev v0\n", i)
					want = append(want, fmt.Sprintf("route add 10.77.%d.0/24", i))
				}
				f := filepath.Join(t.TempDir(), "batch")
				os.WriteFile(f, []byte(b.String()), 0o644)
				ip(ns, "-batch", f)
			}
			addRoutes(0, 20)
			time.Sleep(300 * time.Millisecond) // the first changes reach Jaeger
			j.Stop()
			addRoutes(20, 60)
			time.Sleep(1500 * time.Millisecond) // the exporter fails and retries
			if kill {
				time.Sleep(200 * time.Millisecond) // the journal's writes (every 20 ms) are in the file
				p.cmd.Process.Signal(syscall.SIGKILL)
				<-p.exited
				p = startTrace(t, ns, args...)
				addRoutes(60, 80)
			}
			j.Restart(t)
			addRoutes(80, 100)
			time.Sleep(500 * time.Millisecond)
			_, stderr := p.stop()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var got map[string]int
			deadline := time.Now().Add(20 * time.Second)
			for {
				spans, err := j.WaitSpans(ctx, "routetrace", len(want))
				if err != nil {
					t.Fatalf("%v\nstderr:\n%s", err, stderr)
				}
				got = countChanges(spans)
				if len(got) >= len(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			for _, w := range want {
				if got[w] != 1 {
					t.Errorf("%s arrived %d times", w, got[w])
				}
				delete(got, w)
			}
			for k, n := range got {
				t.Errorf("unexpected span %s ×%d", k, n)
			}
		})
	}
}

// A 100,000-change burst (50,000 routes added by one ip -batch, then
// flushed) is journaled and exported whole: every change accounted for at
// the end, nothing left waiting. Its memory is logged, not bounded: the
// tracer alone peaks at 73-84 MiB of anonymous memory here under this
// load (tier 3's route cache and the dumps that find IPv4 flushes), with
// or without the journal and export; the exporter's and journal's own
// bound is TestBenchExport's.
func TestTraceExportLargeBurst(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	j := jaegertest.Start(t, jaegertest.Options{})
	ns := testnet.New(t)
	// Only rules are printed: the changes are journaled and exported.
	p := startTrace(t, ns, append([]string{"--output", "json", "--object", "rule"}, otlpArgs(j, "grpc")...)...)
	const n = 50000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "route add 10.%d.%d.%d/32 dev v0 proto static\n", 100+(i>>16), (i>>8)&0xff, i&0xff)
	}
	batch := filepath.Join(t.TempDir(), "batch")
	os.WriteFile(batch, []byte(b.String()), 0o644)

	var peakAnon int
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssAnon:" {
						kb, _ := strconv.Atoi(f[1])
						peakAnon = max(peakAnon, kb)
					}
				}
			}
		}
	}()
	ip(ns, "-batch", batch)
	ip(ns, "route", "flush", "proto", "static")
	time.Sleep(4 * time.Second) // the bursts close (quiet + reorder) and are sent
	hwm := statusKiB(t, p.cmd.Process.Pid, "VmHWM:")
	close(stopSampling)
	<-sampled
	_, stderr := p.stop()
	t.Logf("peak anonymous RSS %.1f MiB, peak RSS %.1f MiB (with the ring buffer's mapping and the executable's pages)",
		float64(peakAnon)/1024, float64(hwm)/1024)
	if !regexp.MustCompile(`journal: 100000 changes recorded`).MatchString(stderr) ||
		!strings.Contains(stderr, "0 rejected by the backend; 0 changes waiting for the backend") {
		t.Errorf("stderr:\n%s", stderr)
	}
}
