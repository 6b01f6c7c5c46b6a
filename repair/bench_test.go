package repair

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/tracer"
)

// TestTimeToRepair measures what enforce --mode repair promises: how long
// a protected route is missing, over ROUTETRACE_BENCH_REPAIR deletions
// (e.g. 1000) made one at a time by another process (ip -batch, reading
// its commands from a pipe), each waited for until repaired. It runs a
// real tracer, as the CLI does; ROUTETRACE_BENCH_LOWLATENCY=0 measures
// without tracer.Options.LowLatency. It prints
//
//	time-to-repair: n=1000 median=… p99=… worst=…
//
// and where the time went: detection (the deletion's kernel time to the
// event's emission) and the repair (emission to the kernel's ack).
func TestTimeToRepair(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ROUTETRACE_BENCH_REPAIR"))
	if n <= 0 {
		t.Skip("set ROUTETRACE_BENCH_REPAIR=1000 to measure time-to-repair")
	}
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "route add %s dev v0 table 100\n", dstN(i))
	}
	add := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	add.Stdin = strings.NewReader(batch.String())
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("adding the routes: %v: %s", err, out)
	}

	topts := tracer.Options{LowLatency: os.Getenv("ROUTETRACE_BENCH_LOWLATENCY") != "0"}
	h := startTracer(t, ns, Options{Keep: protected, MaxRepairs: 1 << 30}, topts, wouldBlock)
	if got := h.r.Snapshots(ns.Inode); got != n {
		t.Fatalf("%d snapshots, want %d", got, n)
	}

	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	w := bufio.NewWriter(in)

	missing := make([]time.Duration, 0, n)
	detect := make([]time.Duration, 0, n)
	fix := make([]time.Duration, 0, n)
	for i := range n {
		if i > 0 && i%100 == 0 {
			// Now and then let the tracer go idle (its polls slow down
			// after a second without records): the first deletion after
			// a quiet spell is the slow case.
			time.Sleep(1200 * time.Millisecond)
		}
		fmt.Fprintf(w, "route del %s table 100\n", dstN(i))
		w.Flush()
		ev := h.next("deleting "+dstN(i), deleteOf(dstN(i)))
		if ev.Enforcement.Verdict != event.VerdictRepaired {
			t.Fatalf("%s: %+v", dstN(i), ev.Enforcement)
		}
		missing = append(missing, ev.Enforcement.Missing)
		detect = append(detect, ev.Emitted.Sub(ev.Time))
		fix = append(fix, ev.Time.Add(ev.Enforcement.Missing).Sub(ev.Emitted))
	}
	report := func(what string, d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("%s: n=%d median=%v p99=%v worst=%v", what, len(d), d[len(d)/2], d[len(d)*99/100], d[len(d)-1])
	}
	t.Log(report("time-to-repair", missing))
	fmt.Println(report("time-to-repair", missing))
	fmt.Println(report("  detection (deletion to event)", detect))
	fmt.Println(report("  repair (event to ack)", fix))
}

func dstN(i int) string { return fmt.Sprintf("10.244.%d.%d/32", i/250, i%250+1) }
