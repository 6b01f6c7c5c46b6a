package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/rtnl"
	"github.com/routetrace/routetrace/tracer"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the tracer's cost on route removal (tracer off vs on, same run)",
		Description: "In a private network namespace, adds N IPv4 /24 routes and removes them with `ip -batch`,\n" +
			"adds them again and removes them with `ip route flush`; once with no tracer and once with the\n" +
			"tracer running in this process, alternating, for --rounds rounds. Prints the median times, their\n" +
			"ratio, deletions reported vs expected, lost records and the process's peak RSS.\n\n" +
			"Examples:\n  sudo routetrace bench\n  sudo routetrace bench --n 10000 --rounds 1 --output json",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "n", Value: 100000, Usage: "routes per round"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "rounds per mode (the median is reported)"},
			&cli.StringFlag{Name: "attach", Value: "auto", Usage: "auto, fentry, kprobe or tracepoint"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
			&cli.BoolFlag{Name: "pin", Usage: "tracer on CPU 1, the workload on CPU 0 (see bench_kernel.go)"},
			&cli.BoolFlag{Name: "bpf-stats", Value: true, Usage: "one more traced round with BPF run-time statistics: each program's ns per run, per deleted route"},
		},
		Action: runBench,
	}
}

type benchResult struct {
	N          int     `json:"n"`
	Rounds     int     `json:"rounds"`
	Attach     string  `json:"attach"`
	BatchOff   float64 `json:"batch_off_s"`
	BatchOn    float64 `json:"batch_on_s"`
	FlushOff   float64 `json:"flush_off_s"`
	FlushOn    float64 `json:"flush_on_s"`
	RatioBatch float64 `json:"ratio_batch"`
	RatioFlush float64 `json:"ratio_flush"`
	Expected   uint64  `json:"expected"`
	Reported   uint64  `json:"reported"`
	Lost       uint64  `json:"lost"`
	NotesLost  uint64  `json:"notifications_lost"`
	RSSMiB     float64 `json:"rss_mib"`
	RSSBaseMiB float64 `json:"rss_before_mib"`

	// The statistics round (bench_kernel.go); absent with --bpf-stats=false.
	Kernel *kernelCost `json:"kernel_cost,omitempty"`
}

func runBench(c *cli.Context) error {
	n, rounds := c.Int("n"), c.Int("rounds")
	if n < 1 || n > 1<<22 {
		return fmt.Errorf("--n %d: want 1 to %d", n, 1<<22)
	}
	if rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", rounds)
	}
	if err := checkAttach(c.String("attach")); err != nil {
		return err
	}
	if c.Bool("pin") {
		if err := pinBench(); err != nil {
			return err
		}
	}
	b, err := newBenchNetns(n)
	if err != nil {
		return err
	}
	defer b.close()
	// Ctrl-C must not leave the namespace and its 100k routes behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			b.close()
			fmt.Fprintln(os.Stderr, "routetrace bench: interrupted; namespace", b.name, "removed")
			os.Exit(130)
		}
	}()

	res := benchResult{N: n, Rounds: rounds, RSSBaseMiB: peakRSSMiB()}
	var batchOff, batchOn, flushOff, flushOn []float64
	for r := 0; r < rounds; r++ {
		slog.Info("bench round", "round", r+1, "of", rounds, "mode", "no tracer")
		bt, ft, err := b.round()
		if err != nil {
			return err
		}
		batchOff, flushOff = append(batchOff, bt), append(flushOff, ft)

		slog.Info("bench round", "round", r+1, "of", rounds, "mode", "tracer")
		bt, ft, err = b.tracedRound(c.String("attach"), &res)
		if err != nil {
			return err
		}
		batchOn, flushOn = append(batchOn, bt), append(flushOn, ft)
	}
	res.BatchOff, res.BatchOn = median(batchOff), median(batchOn)
	res.FlushOff, res.FlushOn = median(flushOff), median(flushOn)
	res.RatioBatch = res.BatchOn / res.BatchOff
	res.RatioFlush = res.FlushOn / res.FlushOff
	res.Expected = uint64(2 * n * rounds)
	res.RSSMiB = peakRSSMiB()
	if c.Bool("bpf-stats") {
		if res.Kernel, err = b.measureKernelCost(c.String("attach"), res.BatchOff, res.FlushOff); err != nil {
			return err
		}
	}

	w := c.App.Writer
	if c.String("output") == "json" {
		return json.NewEncoder(w).Encode(res)
	}
	fmt.Fprintf(w, "routetrace bench: %d IPv4 /24 routes, %d round(s), attach %s, median of rounds\n", n, rounds, res.Attach)
	fmt.Fprintf(w, "%-16s %12s %12s %8s\n", "", "no tracer", "tracer", "ratio")
	fmt.Fprintf(w, "%-16s %11.3fs %11.3fs %8.3f\n", "ip -batch del", res.BatchOff, res.BatchOn, res.RatioBatch)
	fmt.Fprintf(w, "%-16s %11.3fs %11.3fs %8.3f\n", "ip route flush", res.FlushOff, res.FlushOn, res.RatioFlush)
	fmt.Fprintf(w, "deletions reported %d of %d expected; %d lost records; %d notification overruns\n",
		res.Reported, res.Expected, res.Lost, res.NotesLost)
	fmt.Fprintf(w, "peak RSS %.1f MiB (%.1f MiB before the first tracer)\n", res.RSSMiB, res.RSSBaseMiB)
	printKernelCost(w, res.Kernel)
	return nil
}

// benchNetns is a private namespace with one veth end for routes to use.
type benchNetns struct {
	name             string
	n                int
	addFile, delFile string
	dir              string
}

func newBenchNetns(n int) (*benchNetns, error) {
	dir, err := os.MkdirTemp("", "routetrace-bench")
	if err != nil {
		return nil, err
	}
	b := &benchNetns{name: fmt.Sprintf("rtbench-%d", os.Getpid()), n: n, dir: dir,
		addFile: filepath.Join(dir, "add"), delFile: filepath.Join(dir, "del")}
	for _, args := range [][]string{
		{"netns", "add", b.name},
		{"-n", b.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"-n", b.name, "link", "set", "v0", "up"},
		{"-n", b.name, "link", "set", "v1", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			b.close()
			return nil, err
		}
	}
	if err := writeBatch(b.addFile, "add", n); err != nil {
		b.close()
		return nil, err
	}
	if err := writeBatch(b.delFile, "del", n); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// writeBatch writes n route commands for 10.0.0.0/24, 10.0.1.0/24, ...
// (counting on into 11/8 past 65536): addresses inside the private netns
// only, never used for traffic.
func writeBatch(path, verb string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		a := uint32(10<<24) + uint32(i)<<8
		fmt.Fprintf(w, "route %s %d.%d.%d.0/24 dev v0 proto static\n", verb, a>>24, a>>16&0xff, a>>8&0xff)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ipCmd(args ...string) error {
	var out []byte
	err := onWorkloadCPU(func() (err error) { out, err = exec.Command("ip", args...).CombinedOutput(); return err })
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// round adds the routes, times their removal by batch, adds them again and
// times their removal by flush.
func (b *benchNetns) round() (batch, flush float64, err error) {
	if err := ipCmd("-n", b.name, "-batch", b.addFile); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := ipCmd("-n", b.name, "-batch", b.delFile); err != nil {
		return 0, 0, err
	}
	batch = time.Since(start).Seconds()
	if err := ipCmd("-n", b.name, "-batch", b.addFile); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	if err := ipCmd("-n", b.name, "route", "flush", "proto", "static"); err != nil {
		return 0, 0, err
	}
	flush = time.Since(start).Seconds()
	return batch, flush, nil
}

func (b *benchNetns) tracedRound(attach string, res *benchResult) (batch, flush float64, err error) {
	t, err := tracer.New(tracer.Options{Attach: attach, Netns: []string{b.name}, Logger: slog.Default()})
	if err != nil {
		return 0, 0, err
	}
	defer t.Close()
	res.Attach = tierName(t)
	inode, err := rtnl.NetnsInode(filepath.Join("/run/netns", b.name))
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var deletes uint64
	go func() {
		done <- t.Run(ctx, func(ev *event.Event) {
			if ev.Netns != inode || ev.Object != event.ObjectRoute || ev.Errno != 0 {
				return
			}
			if ev.Op == event.OpDelete {
				deletes++
			}
		})
	}()
	batch, flush, err = b.round()
	// Let the tracer catch up before it is stopped (the count matters
	// here, the timing was taken above): until no record came for 300ms.
	last, quiet := t.Stats().Records.Load(), 0
	for deadline := time.Now().Add(30 * time.Second); quiet < 6 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		now := t.Stats().Records.Load()
		if now == last {
			quiet++
		} else {
			last, quiet = now, 0
		}
	}
	cancel()
	if rerr := <-done; err == nil {
		err = rerr
	}
	res.Reported += deletes
	res.Lost += t.Lost()
	res.NotesLost += t.Stats().NotificationsLost.Load()
	return batch, flush, err
}

func tierName(t *tracer.Tracer) string {
	if t.Tier3() {
		return "tracepoint"
	}
	for _, h := range t.Hooks() {
		if h.Fn == "fib_table_delete" {
			return h.Tier.String()
		}
	}
	return "unknown"
}

func (b *benchNetns) close() {
	_ = ipCmd("netns", "del", b.name)
	os.RemoveAll(b.dir)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// peakRSSMiB is this process's high-water RSS (VmHWM).
func peakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
