package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExpectedTiers: the tiers a run expects reach the guest as
// ROUTETRACE_VMTEST, which internal/tiertest reads to fail, not skip, a
// refused forced tier; an unknown tier is refused before any boot.
func TestExpectedTiers(t *testing.T) {
	a, err := lookupArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ flag, want string }{
		{"fentry,kprobe,tracepoint", "export ROUTETRACE_VMTEST='fentry,kprobe,tracepoint'\n"},
		{"kprobe, tracepoint", "export ROUTETRACE_VMTEST='kprobe,tracepoint'\n"},
		{"none", "export ROUTETRACE_VMTEST='none'\n"},
	} {
		spec, err := buildSpec(&options{expectTiers: tc.flag}, a, hostSysroot())
		if err != nil {
			t.Fatalf("--expect-tiers %q: %v", tc.flag, err)
		}
		spec.tiers = []string{"fentry"}
		dst := filepath.Join(t.TempDir(), "overlay.cpio")
		if err := overlayImage(spec, dst); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, []byte(tc.want)) {
			t.Errorf("--expect-tiers %q: the guest configuration does not hold %q", tc.flag, tc.want)
		}
	}
	if _, err := buildSpec(&options{expectTiers: "fentry,fexit"}, a, hostSysroot()); err == nil || !strings.Contains(err.Error(), `unknown tier "fexit"`) {
		t.Errorf("--expect-tiers fentry,fexit: got %v, want an unknown-tier error", err)
	}
}

// TestBenchSummary reads a --bench guest's console into the README table.
func TestBenchSummary(t *testing.T) {
	console := `VMTEST-BOOTED release=6.1.0-56-cloud-amd64 uptime=1.75 lsm=bpf
VMTEST-BEGIN tier=fentry binary=bench
VMTEST-BENCH tier=fentry binary=bench json={"n":100,"rounds":1,"attach":"fentry","ratio_batch":1.25,"ratio_flush":1.125,"expected":200,"reported":200,"lost":0,"kernel_cost":{"pinned":true,"phases":[{"name":"ip -batch del","no_tracer_ns_per_change":20000,"bpf_ns_per_change":1000,"bpf_ratio":0.05,"traced_ns_per_change":25000,"bpf_share":0.04,"recursion_misses":0,"programs":[{"name":"fexit_fib_table_delete","runs":100,"ns_per_run":1000}]},{"name":"ip route flush","no_tracer_ns_per_change":10000,"bpf_ns_per_change":500,"bpf_ratio":0.05,"traced_ns_per_change":12500,"bpf_share":0.04,"recursion_misses":2,"programs":[]}]}}
VMTEST-RESULT tier=fentry binary=bench status=pass exit=0
VMTEST-BEGIN tier=kprobe binary=bench
VMTEST-BENCH tier=kprobe binary=bench json=
VMTEST-RESULT tier=kprobe binary=bench status=fail exit=1
VMTEST-DONE uptime=3.0`
	r := &kernelResult{label: "6.1"}
	p := &consoleParser{res: r}
	for _, l := range strings.Split(console, "\n") {
		p.line(l)
	}
	var b strings.Builder
	writeBenchMarkdown(&b, []*kernelResult{r}, []string{"fentry", "kprobe"})
	want := `| Kernel | tier | wall ratio | no tracer ns/route | BPF ns/route | BPF ratio | stats round ns/route | BPF share | deletions reported |
|---|---|---|---|---|---|---|---|---|
| 6.1 | fentry | 1.25 / 1.12 | 20000 / 10000 | 1000 / 500 | 0.050 / 0.050 | 25000 / 12500 | 0.040 / 0.040 | 200 of 200, 0 lost |
| 6.1 | kprobe | routetrace bench exited with status 1 (see the console log) |  |  |  |  |  |  |

- 6.1 fentry, ip -batch del: fexit_fib_table_delete 100 × 1000 ns; 0 recursion misses
- 6.1 fentry, ip route flush: ; 2 recursion misses
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
