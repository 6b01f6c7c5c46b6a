package netnswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

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
	if base := nsPerOp["baseline"]; base > 0 {
		// Printed, not logged: a parent benchmark's log shows only with -v.
		fmt.Printf("%d processes, %d namespaces: Scan %.0f µs = %.2f × baseline %.0f µs; procs+threads %.2f × procs; Scan every %v costs %.3f %% of a core\n",
			w.procs.processes, len(w.known), nsPerOp["Scan"]/1e3, nsPerOp["Scan"]/base, base/1e3,
			nsPerOp["procs+threads"]/nsPerOp["procs"], DefaultInterval, 100*nsPerOp["Scan"]/float64(DefaultInterval.Nanoseconds()))
	}
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
