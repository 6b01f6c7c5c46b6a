package main

import (
	"log/slog"
	"strings"
	"time"
)

// testRun is one test binary run under one tier in one guest.
type testRun struct {
	tier, binary string
	status       string // pass, fail, skip; "" while running
	exit         string
	pass         int // --- PASS/FAIL/SKIP lines at any depth, as go test -json counts them
	fail         int
	skip         int
	skips        []skip
	bench        string // routetrace bench's JSON result (vmtest --bench)
	took         time.Duration
	started      time.Time
}

type skip struct{ test, reason string }

// kernelResult is everything learned from one guest's console.
type kernelResult struct {
	k        *kernel
	label    string // list entry, for rows when the kernel could not even be fetched
	entry    kernelEntry
	accel    string
	logPath  string
	err      error // harness or VM failure: fetch, build, timeout, crash
	booted   bool
	done     bool
	bootTime time.Duration // QEMU start to init's VMTEST-BOOTED
	total    time.Duration
	lsm      string
	panic    string // first "Kernel panic" line, to say why a guest stopped
	runs     []*testRun
	probe    string // routetrace probe --output json in the guest (init.sh), raw
}

// consoleParser follows the guest console line by line. Markers are
// searched anywhere in a line because kernel messages can share a line with
// the guest's output on a serial console.
type consoleParser struct {
	res   *kernelResult
	start time.Time
	cur   *testRun
}

func (p *consoleParser) line(s string) {
	if i := strings.Index(s, "Kernel panic"); i >= 0 && p.res.panic == "" {
		p.res.panic = s[i:]
	}
	if i := strings.Index(s, "VMTEST-"); i >= 0 {
		p.marker(s[i:])
		return
	}
	if p.cur == nil {
		return
	}
	t := strings.TrimLeft(s, " \t")
	switch {
	case strings.HasPrefix(t, "--- PASS:"):
		p.cur.pass++
	case strings.HasPrefix(t, "--- FAIL:"):
		p.cur.fail++
	case strings.HasPrefix(t, "--- SKIP:"):
		p.cur.skip++
	}
}

func (p *consoleParser) marker(s string) {
	kind, rest, _ := strings.Cut(s, " ")
	f := markerFields(rest)
	switch kind {
	case "VMTEST-BOOTED":
		p.res.booted = true
		p.res.bootTime = time.Since(p.start)
		p.res.lsm = f["lsm"]
		slog.Info("guest booted", "kernel", f["release"], "boot", p.res.bootTime.Round(100*time.Millisecond), "lsm", f["lsm"])
	case "VMTEST-BEGIN":
		p.cur = &testRun{tier: f["tier"], binary: f["binary"], started: time.Now()}
		p.res.runs = append(p.res.runs, p.cur)
	case "VMTEST-SKIP":
		if r := p.find(f); r != nil {
			r.skips = append(r.skips, skip{test: f["test"], reason: f["reason"]})
		}
	case "VMTEST-RESULT":
		if r := p.find(f); r != nil {
			r.status, r.exit = f["status"], f["exit"]
			r.took = time.Since(r.started)
			slog.Info("test binary finished", "tier", r.tier, "binary", r.binary, "status", r.status,
				"passed", r.pass, "failed", r.fail, "skipped", r.skip, "took", r.took.Round(100*time.Millisecond))
		}
		p.cur = nil
	case "VMTEST-BENCH":
		if r := p.find(f); r != nil {
			r.bench = f["json"]
		}
	case "VMTEST-PROBE":
		p.res.probe = f["json"]
	case "VMTEST-WARN":
		slog.Warn("guest: " + rest)
	case "VMTEST-DONE":
		p.res.done = true
	}
}

func (p *consoleParser) find(f map[string]string) *testRun {
	for i := len(p.res.runs) - 1; i >= 0; i-- {
		if r := p.res.runs[i]; r.tier == f["tier"] && r.binary == f["binary"] {
			return r
		}
	}
	return nil
}

// markerFields splits "k=v k=v reason=free text" into a map. reason, lsm
// and json come last and take the rest of the line since they may hold
// spaces.
func markerFields(s string) map[string]string {
	f := map[string]string{}
	for s != "" {
		var tok string
		if strings.HasPrefix(s, "reason=") || strings.HasPrefix(s, "lsm=") || strings.HasPrefix(s, "json=") {
			tok, s = s, ""
		} else {
			tok, s, _ = strings.Cut(s, " ")
		}
		if k, v, ok := strings.Cut(tok, "="); ok {
			f[k] = v
		}
	}
	return f
}
