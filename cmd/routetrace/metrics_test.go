package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The Prometheus endpoint counts the changes made, by object, operation,
// actor, errno and origin, with the loss counters and the journal's size
// beside them, while the tracer runs.
func TestTraceMetrics(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	addr := freePort(t)
	p := startTrace(t, ns, "--output", "json", "--metrics-addr", addr)
	ip(ns, "route", "add", "198.51.100.0/24", "dev", "v0")
	ip(ns, "route", "add", "198.51.101.0/24", "dev", "v0")
	ip(ns, "route", "del", "198.51.100.0/24", "dev", "v0")
	ipFails(t, ns, "route", "del", "198.51.200.0/24")
	ip(ns, "rule", "add", "pref", "600", "lookup", "100")
	// Wait until the tracer has reported all five, then scrape.
	var text string
	for range 100 {
		text = scrape(t, addr)
		if strings.Count(text, "routetrace_changes_total{") >= 4 {
			break
		}
	}
	stdout, stderr := p.stop()
	actor := "ip"
	if u := parseJSONLines(t, stdout)[0]["actor.unit"]; u != nil {
		actor = fmt.Sprint(u) // a systemd unit names the actor where there is one
	}
	for _, want := range []string{
		fmt.Sprintf(`routetrace_changes_total{actor=%q,errno="ok",object="route",op="add",origin="netlink"} 2`, actor),
		fmt.Sprintf(`routetrace_changes_total{actor=%q,errno="ok",object="route",op="delete",origin="netlink"} 1`, actor),
		fmt.Sprintf(`routetrace_changes_total{actor=%q,errno="ESRCH",object="route",op="delete",origin="netlink"} 1`, actor),
		fmt.Sprintf(`routetrace_changes_total{actor=%q,errno="ok",object="rule",op="add",origin="netlink"} 1`, actor),
		`routetrace_lost_total{reason="ring_records"} 0`,
		`routetrace_lost_total{reason="overruns"} 0`,
		`routetrace_journal_dropped_total 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s\n%s\nstderr:\n%s", want, grepLines(text, "routetrace_"), stderr)
		}
	}
	if n := strings.Count(text, "routetrace_changes_total{"); n != 4 {
		t.Errorf("%d change series, want 4:\n%s", n, grepLines(text, "routetrace_changes_total"))
	}
	if !strings.Contains(text, "routetrace_journal_size_bytes ") {
		t.Errorf("no journal size:\n%s", grepLines(text, "routetrace_"))
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
