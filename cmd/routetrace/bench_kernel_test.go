package main

import (
	"encoding/json"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/testnet"
)

func TestFdinfoProgID(t *testing.T) {
	prog := "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t26\nprog_jited:\t1\nprog_tag:\t0e2b2cc5b8d4b6a4\nmemlock:\t4096\nprog_id:\t731\nrun_time_ns:\t0\nrun_cnt:\t0\n"
	if id, ok := fdinfoProgID(prog); !ok || id != 731 {
		t.Errorf("a program's fdinfo: got %d, %v; want 731, true", id, ok)
	}
	for _, other := range []string{"pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\n", "map_type:\t27\nmap_id:\t12\n", "prog_id:\t0\n"} {
		if id, ok := fdinfoProgID(other); ok {
			t.Errorf("%q: got program %d, want none", other, id)
		}
	}
}

func TestPhaseOf(t *testing.T) {
	progs := []ownProgram{{name: "fexit_fib_table_delete"}, {name: "idle"}, {name: "fentry_fib_notify_alias_delete"}}
	before := []ebpf.ProgramStats{{RunCount: 5, Runtime: 500}, {RunCount: 7, Runtime: 70}, {}}
	after := []ebpf.ProgramStats{
		{RunCount: 1005, Runtime: 500 + 1000*800},
		{RunCount: 7, Runtime: 70},
		{RunCount: 1000, Runtime: 1000 * 1200, RecursionMisses: 3},
	}
	got := phaseOf("ip -batch del", 1000, 0.02, 25*time.Millisecond, progs, before, after)
	want := phaseCost{
		Name: "ip -batch del", Deleted: 1000,
		NoTracerNsPer: 20000, BPFNsPer: 2000, Ratio: 0.1, TracedNsPer: 25000, Share: 0.08,
		RecursionMisses: 3,
		Programs: []progCost{ // largest total first; the idle one left out
			{Name: "fentry_fib_notify_alias_delete", Runs: 1000, NsPerRun: 1200, Misses: 3},
			{Name: "fexit_fib_table_delete", Runs: 1000, NsPerRun: 800},
		},
	}
	if got.Name != want.Name || got.Deleted != want.Deleted || got.NoTracerNsPer != want.NoTracerNsPer ||
		got.BPFNsPer != want.BPFNsPer || got.Ratio != want.Ratio || got.TracedNsPer != want.TracedNsPer ||
		got.Share != want.Share || got.RecursionMisses != want.RecursionMisses || !slices.Equal(got.Programs, want.Programs) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestOwnPrograms: a program this process loads is found, by name, among
// its file descriptors.
func TestOwnPrograms(t *testing.T) {
	testnet.RequireRoot(t)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "rt_own_test", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatalf("loading a socket filter: %v", err)
	}
	defer p.Close()
	progs, err := ownPrograms()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range progs {
		names = append(names, o.name)
		o.prog.Close()
	}
	if !slices.Contains(names, "rt_own_test") {
		t.Errorf("own programs %q, want rt_own_test among them", names)
	}
}

// TestOnWorkloadCPU: with --pin, a command starts on the workload's CPU
// only, and the thread that started it is back on the tracer's.
func TestOnWorkloadCPU(t *testing.T) {
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		t.Fatal(err)
	}
	if !online.IsSet(workloadCPU) || !online.IsSet(tracerCPU) {
		t.Skipf("needs CPUs %d and %d; this process may use %d", workloadCPU, tracerCPU, online.Count())
	}
	pinned = true
	defer func() { pinned = false }()
	// Locked here too (locks nest), so that after onWorkloadCPU this is
	// still the thread that started the command.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer unix.SchedSetaffinity(0, &online) // the thread goes back to the pool as it came
	var out []byte
	err := onWorkloadCPU(func() (err error) {
		out, err = exec.Command("grep", "Cpus_allowed_list", "/proc/self/status").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(string(out)), " "); got != "Cpus_allowed_list: 0" {
		t.Errorf("the command ran with %q, want CPU 0 only", got)
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after.Count() != 1 || !after.IsSet(tracerCPU) {
		t.Errorf("the starting thread is left on %d CPU(s), want CPU %d only", after.Count(), tracerCPU)
	}
}

// TestBenchKernelCost runs the built binary with --pin and checks the
// statistics round's JSON: both removal methods, each with the programs
// that ran on every deleted route, and ratios consistent with the times.
func TestBenchKernelCost(t *testing.T) {
	testnet.RequireRoot(t)
	const n = 200 // enough for per-route times; each route costs TCG time
	// Only the modes the kernel cost needs: no tracer, and the traced
	// round with BPF statistics. Enrichment and the journal are user
	// space (TestBenchJSON runs them); under TCG each mode costs ~30 s.
	// And only the two deletion cases it measures: dd's 4M syscalls and
	// udp's 200k took the no-tracer round past 4 minutes under arm64 TCG.
	args := []string{"bench", "--n", strconv.Itoa(n), "--rounds", "1", "--output", "json", "--enrich=false", "--journal=false",
		"--cases", "batch,flush"}
	// --pin where there are two CPUs (vmtest's guests have one).
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		t.Fatal(err)
	}
	pin := online.IsSet(workloadCPU) && online.IsSet(tracerCPU)
	if pin {
		args = append(args, "--pin")
	}
	r := runBenchCmd(t, args...)
	var res struct {
		Attach string      `json:"attach"`
		Kernel *kernelCost `json:"kernel_cost"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	k := res.Kernel
	if k == nil {
		t.Fatalf("no kernel_cost (BPF statistics refused?)\nstderr:\n%s", r.stderr)
	}
	if k.Pinned != pin || len(k.Phases) != 2 || k.Phases[0].Name != "ip -batch del" || k.Phases[1].Name != "ip route flush" {
		t.Fatalf("pinned %v, phases %+v; want pinned %v, ip -batch del then ip route flush", k.Pinned, k.Phases, pin)
	}
	for _, ph := range k.Phases {
		if ph.Deleted != n || ph.NoTracerNsPer <= 0 || ph.TracedNsPer <= 0 || ph.BPFNsPer <= 0 {
			t.Errorf("%s: deleted %d, no tracer %.0f ns, traced %.0f ns, BPF %.0f ns per route; want %d and times > 0",
				ph.Name, ph.Deleted, ph.NoTracerNsPer, ph.TracedNsPer, ph.BPFNsPer, n)
		}
		if ratio := ph.BPFNsPer / ph.NoTracerNsPer; ph.Ratio != ratio {
			t.Errorf("%s: bpf_ratio %v, want %v", ph.Name, ph.Ratio, ratio)
		}
		// Every deleted route runs at least one program: in tiers 1-2
		// the fexit or kretprobe of fib_table_delete, in tier 3 the
		// capture of the request that carried it (several per request).
		var runs uint64
		for _, p := range ph.Programs {
			if p.Name == "" || p.Runs == 0 || p.NsPerRun <= 0 {
				t.Errorf("%s: program %+v; want a name, runs and ns per run", ph.Name, p)
			}
			runs += p.Runs
			once := p.Name == "fexit_fib_table_delete" || p.Name == "kprobe_fib_table_delete" || p.Name == "kretprobe_fib_table_delete"
			if once && p.Runs != n {
				t.Errorf("%s: %s ran %d times, want once per deleted route (%d)", ph.Name, p.Name, p.Runs, n)
			}
		}
		if runs == 0 {
			t.Errorf("%s: no program ran", ph.Name)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}
