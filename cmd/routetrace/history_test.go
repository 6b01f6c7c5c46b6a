package main

import (
	"bytes"
	endian "encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// history runs `routetrace history args...` and returns stdout and stderr.
func history(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, append([]string{"history"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("routetrace history %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// eventLines drops trace's closing {"summary":...} line.
func eventLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, `{"summary":`) {
			lines = append(lines, l)
		}
	}
	return lines
}

// history prints, byte for byte, what trace printed for the same changes:
// all of them, and with the same filters as a second tracer that ran with
// them; --since and --until cut by the events' times; a damaged record is
// skipped and reported, the rest printed.
func TestHistoryMatchesTrace(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	state := t.TempDir()
	all := startTrace(t, ns, "--output", "json", "--state-dir", state)
	filters := []string{"--op", "delete", "--dst", "198.51.0.0/16"}
	filtered := startTrace(t, ns, append([]string{"--output", "json"}, filters...)...)

	ip(ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "proto", "static", "table", "100")
	ip(ns, "rule", "add", "pref", "512", "from", "10.244.1.5", "lookup", "100")
	time.Sleep(50 * time.Millisecond)
	cut := time.Now()
	time.Sleep(50 * time.Millisecond)
	ip(ns, "route", "del", "198.51.100.0/24", "table", "100")
	ipFails(t, ns, "route", "del", "198.51.200.0/24")
	ip(ns, "rule", "del", "pref", "512")

	allOut, _ := all.stop()
	filteredOut, _ := filtered.stop()
	want := eventLines(allOut)
	if len(want) != 5 {
		t.Fatalf("trace printed %d changes, want 5:\n%s", len(want), allOut)
	}
	got, stderr := history(t, "--state-dir", state, "--output", "json")
	if g := eventLines(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history:\n%s\ntrace:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(stderr, "history: 5 of 5 journaled changes shown") {
		t.Errorf("stderr: %s", stderr)
	}

	// The second tracer stamps the same change a few microseconds apart
	// (each converts the kernel's clock to wall time at its own start), and
	// may deliver two changes in another order (tier 3 joins a failure with
	// its request's record): lines compare without their time, which must
	// be within 100 ms (each tracer converts the kernel's clock once, at its
	// start: 2.2 ms apart measured under TCG), in sorted order.
	got, _ = history(t, append([]string{"--state-dir", state, "--output", "json"}, filters...)...)
	if g, w := withoutTimes(t, eventLines(got), eventLines(filteredOut)); len(w) != 2 || strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Fatalf("history %s:\n%s\ntrace %s:\n%s", filters, strings.Join(g, "\n"), filters, strings.Join(w, "\n"))
	}

	// --since and --until split the journal at a time between the adds
	// and the deletions: each prints, in journal order, exactly the lines
	// on its side of it.
	since, _ := history(t, "--state-dir", state, "--output", "json", "--since", cut.Format(time.RFC3339Nano))
	until, _ := history(t, "--state-dir", state, "--output", "json", "--until", cut.Format(time.RFC3339Nano))
	var before, after []string
	for _, l := range want {
		m := timeField.FindStringSubmatch(l)
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatal(err)
		}
		if ts.Before(cut) {
			before = append(before, l)
		} else {
			after = append(after, l)
		}
	}
	if s, u := eventLines(since), eventLines(until); len(before) != 2 || strings.Join(u, "\n") != strings.Join(before, "\n") ||
		strings.Join(s, "\n") != strings.Join(after, "\n") {
		t.Fatalf("--until %v:\n%s\n--since:\n%s\ntrace:\n%s", cut, strings.Join(u, "\n"), strings.Join(s, "\n"), strings.Join(want, "\n"))
	}

	// A flipped byte in the third record's payload: it is skipped and
	// reported, the four others printed.
	segs, _ := filepath.Glob(filepath.Join(state, "journal", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[recordOffset(t, b, 3)+40] ^= 0xff
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, stderr = history(t, "--state-dir", state, "--output", "json")
	if g := eventLines(got); strings.Join(g, "\n") != strings.Join(append(append([]string{}, want[:2]...), want[3:]...), "\n") {
		t.Fatalf("history of a damaged journal:\n%s", strings.Join(g, "\n"))
	}
	if !strings.Contains(stderr, "1 damaged regions") || !strings.Contains(stderr, "4 of 4 journaled changes shown") {
		t.Errorf("stderr of a damaged journal: %s", stderr)
	}
}

// TestHistoryErrors: a missing journal names what writes it and the flag.
func TestHistoryErrors(t *testing.T) {
	tiertest.TierIndependent(t)
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "history", "--state-dir", filepath.Join(t.TempDir(), "nothing"))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "routetrace trace") || !strings.Contains(stderr.String(), "--state-dir") {
		t.Fatalf("err %v, stderr %s", err, stderr.String())
	}
	cmd = exec.Command(binary, "history", "--since", "yesterday-ish", "--state-dir", t.TempDir())
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), `--since "yesterday-ish": want a duration ago`) {
		t.Fatalf("err %v, stderr %s", err, stderr.String())
	}
}

// recordOffset finds the n-th record (from 1) of a journal segment by
// walking its framing: an 8-byte segment header, then records of a 28-byte
// header whose bytes 8-12 are the payload's length (journal/format.go).
func recordOffset(t *testing.T, seg []byte, n int) int {
	off := 8
	for i := 1; i < n; i++ {
		if off+28 > len(seg) {
			t.Fatalf("segment has fewer than %d records", n)
		}
		off += 28 + int(endian.LittleEndian.Uint32(seg[off+8:]))
	}
	return off
}

var timeField = regexp.MustCompile(`^\{"time":"([^"]+)",`)

// withoutTimes strips the time of each line of a and b and sorts them,
// failing if two lines' times are more than 100 ms apart.
func withoutTimes(t *testing.T, a, b []string) ([]string, []string) {
	t.Helper()
	strip := func(lines []string) ([]string, []time.Time) {
		type line struct {
			text string
			at   time.Time
		}
		var ls []line
		for _, l := range lines {
			m := timeField.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("no time in %s", l)
			}
			ts, _ := time.Parse(time.RFC3339Nano, m[1])
			ls = append(ls, line{"{" + l[len(m[0]):], ts})
		}
		slices.SortFunc(ls, func(x, y line) int { return strings.Compare(x.text, y.text) })
		var out []string
		var times []time.Time
		for _, l := range ls {
			out = append(out, l.text)
			times = append(times, l.at)
		}
		return out, times
	}
	sa, ta := strip(a)
	sb, tb := strip(b)
	for i := range min(len(ta), len(tb)) {
		if d := ta[i].Sub(tb[i]); d > 100*time.Millisecond || d < -100*time.Millisecond {
			t.Errorf("line %d: times %v and %v", i, ta[i], tb[i])
		}
	}
	return sa, sb
}
