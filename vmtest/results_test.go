package main

import (
	"strings"
	"testing"
)

func TestConsoleParser(t *testing.T) {
	console := `[    1.0] some kernel line
VMTEST-BOOTED release=6.1.0-56-cloud-amd64 uptime=1.75 lsm=lockdown,capability,bpf
VMTEST-BEGIN tier=fentry binary=tracer.test
=== RUN   TestA
--- PASS: TestA (0.00s)
=== RUN   TestB
    --- SKIP: TestB/sub (0.00s)
--- FAIL: TestB (0.00s)
VMTEST-SKIP tier=fentry binary=tracer.test test=TestB/sub reason=fentry refused: EPERM
VMTEST-RESULT tier=fentry binary=tracer.test status=fail exit=1
VMTEST-BEGIN tier=kprobe binary=tracer.test
--- SKIP: TestA (0.00s)
[    2.0] kernel noise VMTEST-RESULT tier=kprobe binary=tracer.test status=skip exit=0
VMTEST-DONE uptime=3.0`
	r := &kernelResult{}
	p := &consoleParser{res: r}
	for _, l := range strings.Split(console, "\n") {
		p.line(l)
	}
	if !r.booted || !r.done || r.lsm != "lockdown,capability,bpf" {
		t.Fatalf("booted=%v done=%v lsm=%q", r.booted, r.done, r.lsm)
	}
	if len(r.runs) != 2 {
		t.Fatalf("got %d runs, want 2", len(r.runs))
	}
	f := r.runs[0]
	if f.status != "fail" || f.pass != 1 || f.fail != 1 || f.skip != 1 {
		t.Errorf("fentry run = %+v", f)
	}
	if len(f.skips) != 1 || f.skips[0] != (skip{"TestB/sub", "fentry refused: EPERM"}) {
		t.Errorf("fentry skips = %+v", f.skips)
	}
	if k := r.runs[1]; k.status != "skip" || k.skip != 1 {
		t.Errorf("kprobe run = %+v", k)
	}

	cells := summarize(r, []string{"fentry", "kprobe", "tracepoint"}, []string{"tracer.test"})
	want := []string{"FAIL 1/1/1", "SKIP 0/0/1", "ERROR 0/0/0"}
	for i, c := range cells {
		if c.String() != want[i] {
			t.Errorf("cell %d = %s, want %s", i, c, want[i])
		}
	}
}

func TestMarkerFields(t *testing.T) {
	f := markerFields("tier=fentry binary=x.test test=TestA reason=needs kernel 6.3: attach refused")
	if f["tier"] != "fentry" || f["test"] != "TestA" || f["reason"] != "needs kernel 6.3: attach refused" {
		t.Errorf("got %v", f)
	}
}

// TestSkipNotes: every skip is seen below the table, a top-level test's
// with its reason, subtests' counted per test.
func TestSkipNotes(t *testing.T) {
	r := &kernelResult{label: "6.1", runs: []*testRun{{tier: "fentry", binary: "tracer.test", status: "pass", skips: []skip{
		{"TestRecordLayoutMatchesBTF/fib_arm64", "no source tree in the VM"},
		{"TestBPFParserAgreesWithGo/33rd_attribute", "intended"},
		{"TestRecordLayoutMatchesBTF/nlcapture_arm64", "no source tree in the VM"},
		{"TestRoute", "needs net-tools' route command"},
		{"TestHelp", "tier-independent: runs once per kernel, under --attach=tracepoint"},
		{"TestProbe", "tier-independent: runs once per kernel, under --attach=tracepoint"},
	}}}}
	var b strings.Builder
	writeNotes(&b, []*kernelResult{r}, "- ")
	want := "\n- 6.1 fentry tracer.test TestRoute skipped: needs net-tools' route command\n" +
		"- 6.1 fentry tracer.test 2 tests skipped: tier-independent: runs once per kernel, under --attach=tracepoint\n" +
		"- 6.1 fentry tracer.test subtests skipped: TestRecordLayoutMatchesBTF 2, TestBPFParserAgreesWithGo 1\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
