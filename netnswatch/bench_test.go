package netnswatch

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var benchProcesses = flag.Int("netnswatch.processes", 0, "BenchmarkScan: this many more processes (sleep, in our namespace), to see the cost on a busy node")

// BenchmarkScan measures one Scan with 200 extra namespaces on the node
// (100 bind-mounted, 100 held by a process each), against a baseline
// doing the same job the obvious way (os.ReadDir of /proc, os.Stat of
// each ns/net, mountinfo read and parsed each time), and prints the
// ratio. Sub-benchmarks: Scan as Run calls it (one in threadScanEvery
// also stats threads), and the /proc walk alone without and with threads.
func BenchmarkScan(b *testing.B) {
	requireRoot(b)
	addNamed(b, netnsNames("bench", 100)...)
	startProcNetns(b, 100)
	for range *benchProcesses {
		cmd := child("sleep", "600")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	w := newWatcher(b, Options{})
	if _, _, err := w.Scan(); err != nil {
		b.Fatal(err)
	}

	nsPerOp := map[string]float64{}
	run := func(name string, f func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			f(b)
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			nsPerOp[name] = perOp
			b.ReportMetric(perOp/float64(w.procs.processes), "ns/process")
		})
	}
	run("baseline", func(b *testing.B) {
		for b.Loop() {
			if n := naiveScan(b); n == 0 {
				b.Fatal("no namespace found")
			}
		}
	})
	run("Scan", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := w.Scan(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, threads := range []bool{false, true} {
		name := "procs"
		if threads {
			name = "procs+threads"
		}
		run(name, func(b *testing.B) {
			for b.Loop() {
				clear(w.seen)
				if err := w.procs.scan(w.seen, threads); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(w.procs.threads), "threads")
		})
	}
	// The machine is shared: timed one after the other, the two sides
	// see different loads. Interleaved, each pair sees about the same,
	// and the median of the per-pair ratios ignores a pair hit by a burst.
	var ratios, scans []float64
	b.Run("interleaved", func(b *testing.B) {
		for b.Loop() {
			t0 := time.Now()
			naiveScan(b)
			t1 := time.Now()
			if _, _, err := w.Scan(); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			ratios = append(ratios, float64(t2.Sub(t1))/float64(t1.Sub(t0)))
			scans = append(scans, float64(t2.Sub(t1)))
		}
		b.ReportMetric(median(ratios), "Scan/baseline")
	})
	scan := median(scans)
	// Printed, not logged: a parent benchmark's log shows only with -v.
	fmt.Printf("%d processes, %d namespaces: Scan %.0f µs (median) = %.2f × the obvious scan (median of interleaved pairs); "+
		"walk with threads %.2f × without; a Scan every %v costs %.3f %% of a core\n",
		w.procs.processes, len(w.known), scan/1e3, median(ratios),
		nsPerOp["procs+threads"]/nsPerOp["procs"], DefaultInterval, 100*scan/float64(DefaultInterval.Nanoseconds()))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// naiveScan is the obvious scan the Watcher is measured against.
func naiveScan(b *testing.B) int {
	seen := map[uint32]string{}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range parseMountinfo(mi, nil) {
		seen[m.inode] = m.path
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join("/proc", e.Name(), "ns/net"))
		if err != nil {
			continue
		}
		ino := uint32(fi.Sys().(*syscall.Stat_t).Ino)
		if _, ok := seen[ino]; !ok {
			seen[ino] = e.Name()
		}
	}
	return len(seen)
}
