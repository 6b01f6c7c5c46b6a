package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/exporter"
	"github.com/routetrace/routetrace/journal"
	"github.com/routetrace/routetrace/rtnl"
	"github.com/routetrace/routetrace/tracer"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the tracer's cost (tracer off vs on, same run) and check it reports every deletion with its actor",
		Description: "In a private network namespace, for --rounds rounds, each round once with no tracer and once\n" +
			"with the tracer running in this process, runs these cases (--cases picks some):\n" +
			"  batch   add N IPv4 /24 routes, remove them with `ip -batch` (one delete per request)\n" +
			"  flush   add them again, remove them with `ip route flush` (batched deletes)\n" +
			"  client  add them again, remove them with a tight netlink client: one RTM_DELROUTE per\n" +
			"          sendmsg, each ack read before the next (a routing daemon withdrawing a feed)\n" +
			"  dd      `dd if=/dev/zero of=/dev/null bs=1 count=--dd-count`: the tax on a process that\n" +
			"          has nothing to do with routing (a read and a write per byte)\n" +
			"  udp     --udp-count one-byte UDP datagrams sent with sendmsg on loopback\n" +
			"and prints the median time of each case with and without the tracer, and their ratio.\n\n" +
			"Under the tracer, every deletion the bench made must be reported exactly once, with the pid\n" +
			"and comm of the process that made it (ip, or the netlink client); missing, duplicated or\n" +
			"misattributed deletions are listed and make the bench fail (exit status 1). It also prints\n" +
			"what may have been lost, the process's peak RSS and the kernel memory of the BPF maps.\n\n" +
			"Examples:\n  sudo routetrace bench\n  sudo routetrace bench --n 1000000 --rounds 1\n" +
			"  sudo routetrace bench --n 10000 --rounds 1 --cases client,dd --output json",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "n", Value: 100000, Usage: "routes per deletion case"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "rounds per mode (the median is reported)"},
			&cli.StringFlag{Name: "attach", Value: "auto", Usage: "auto, fentry, kprobe or tracepoint"},
			captureFlag(),
			&cli.StringSliceFlag{Name: "cases", Value: cli.NewStringSlice(benchCaseKeys()...), Usage: "which cases to run"},
			&cli.IntFlag{Name: "dd-count", Value: 2000000, Usage: "bytes dd copies one at a time"},
			&cli.IntFlag{Name: "udp-count", Value: 200000, Usage: "datagrams the UDP case sends"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
			&cli.BoolFlag{Name: "pin", Usage: "tracer on CPU 1, the workload on CPU 0 (see bench_kernel.go)"},
			&cli.BoolFlag{Name: "journal", Value: true, Usage: "also time each case with enrichment and the journal (trace's whole pipeline), in a fourth mode of each round"},
			&cli.BoolFlag{Name: "enrich", Value: true, Usage: "also time each case with enrichment (unit, pod, command line, link names), in a third mode of each round, and print what it adds"},
			&cli.IntFlag{Name: "synthetic-pods", Hidden: true, Usage: "give the enricher this many generated pods (3 containers each): memory and lookup cost with a full cache"},
			&cli.BoolFlag{Name: "bpf-stats", Value: true, Usage: "one more traced round with BPF run-time statistics: each program's ns per run, per deleted route"},
		},
		Action: runBench,
	}
}

// A benchCase is one workload timed with and without the tracer.
type benchCase struct {
	key, label string
	// deletes: the case removes the bench's N routes, which are added
	// (untimed) before it, and its deletions are checked under the tracer.
	deletes bool
	run     func(b *benchNetns) (caseRun, error)
}

// caseRun is one timed run of a case, and the processes that did the work
// (one, except when ip route flush had to be run again).
type caseRun struct {
	seconds float64
	pids    []uint32
	comm    string
}

var benchCases = []benchCase{
	{"batch", "ip -batch del", true, (*benchNetns).ipBatchDelete},
	{"flush", "ip route flush", true, (*benchNetns).ipFlush},
	{"client", "netlink client", true, (*benchNetns).clientDelete},
	{"dd", "dd bs=1", false, (*benchNetns).dd},
	{"udp", "udp sendmsg", false, (*benchNetns).udp},
}

func benchCaseKeys() []string {
	keys := make([]string, len(benchCases))
	for i, c := range benchCases {
		keys[i] = c.key
	}
	return keys
}

// caseResult is a case's medians; its JSON keys are <key>_off_s,
// <key>_on_s and ratio_<key>, flattened into benchResult's object.
type caseResult struct {
	Key   string
	Label string
	Off   float64
	On    float64
	Ratio float64
	// With enrichment (0 when --enrich=false).
	OnEnrich    float64
	RatioEnrich float64
	// With enrichment and the journal: trace's whole pipeline (0 when
	// --journal=false).
	OnJournal    float64
	RatioJournal float64
}

type benchResult struct {
	N        int      `json:"n"`
	Rounds   int      `json:"rounds"`
	Attach   string   `json:"attach"`
	Capture  string   `json:"capture,omitempty"` // tier 3's, when used
	Cases    []string `json:"cases"`
	DDCount  int      `json:"dd_count"`
	UDPCount int      `json:"udp_count"`
	// Expected counts the deletions the bench made under the tracer,
	// Reported those reported exactly once with the right actor.
	Expected   uint64            `json:"expected"`
	Reported   uint64            `json:"reported"`
	Identity   identityCounts    `json:"identity"`
	Lost       uint64            `json:"lost"`
	Losses     map[string]uint64 `json:"losses"`
	NotesLost  uint64            `json:"notifications_lost"`
	RSSMiB     float64           `json:"rss_mib"`
	RSSBaseMiB float64           `json:"rss_before_mib"`
	BPF        bpfMemory         `json:"bpf"`

	// Enrichment: its cost on the event path, sampled, and its caches.
	Enrich  *enrichResult  `json:"enrich,omitempty"`
	Journal *journalResult `json:"journal,omitempty"`

	// The statistics round (bench_kernel.go); absent with --bpf-stats=false.
	Kernel *kernelCost `json:"kernel_cost,omitempty"`

	results    []caseResult
	losses     tracer.Losses
	mismatches []string
}

// MarshalJSON flattens the per-case results into the object.
func (r *benchResult) MarshalJSON() ([]byte, error) {
	type plain benchResult
	b, err := json.Marshal((*plain)(r))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, c := range r.results {
		m[c.Key+"_off_s"], m[c.Key+"_on_s"], m["ratio_"+c.Key] = c.Off, c.On, c.Ratio
		if c.OnEnrich > 0 {
			m[c.Key+"_enrich_s"], m["ratio_"+c.Key+"_enrich"] = c.OnEnrich, c.RatioEnrich
		}
		if c.OnJournal > 0 {
			m[c.Key+"_journal_s"], m["ratio_"+c.Key+"_journal"] = c.OnJournal, c.RatioJournal
		}
	}
	return json.Marshal(m)
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
	if err := checkCaptureFlag(c.String("capture")); err != nil {
		return err
	}
	if c.Bool("pin") {
		if err := pinBench(); err != nil {
			return err
		}
	}
	var cases []benchCase
	for _, k := range splitAll(c.StringSlice("cases")) {
		i := slices.IndexFunc(benchCases, func(bc benchCase) bool { return bc.key == k })
		if i < 0 {
			return fmt.Errorf("--cases %q: want some of %s", k, strings.Join(benchCaseKeys(), ", "))
		}
		if !slices.ContainsFunc(cases, func(bc benchCase) bool { return bc.key == k }) {
			cases = append(cases, benchCases[i])
		}
	}
	if len(cases) == 0 {
		return fmt.Errorf("--cases: want some of %s", strings.Join(benchCaseKeys(), ", "))
	}
	for _, f := range []string{"dd-count", "udp-count"} {
		if c.Int(f) < 1 {
			return fmt.Errorf("--%s %d: want at least 1", f, c.Int(f))
		}
	}
	if o := c.String("output"); o != "text" && o != "json" {
		return fmt.Errorf("--output %q: want text or json", o)
	}
	b, err := newBenchNetns(n, c.Int("dd-count"), c.Int("udp-count"))
	if err != nil {
		return err
	}
	defer b.close()
	b.capture = c.String("capture")
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

	res := &benchResult{N: n, Rounds: rounds, DDCount: b.ddCount, UDPCount: b.udpCount, RSSBaseMiB: peakRSSMiB()}
	for _, bc := range cases {
		res.Cases = append(res.Cases, bc.key)
	}
	b.synthPods = c.Int("synthetic-pods")
	off, on, onEnrich, onJournal := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	journaled := c.Bool("journal") && c.Bool("enrich")
	if c.Bool("enrich") {
		res.Enrich = &enrichResult{}
	}
	for r := 0; r < rounds; r++ {
		slog.Info("bench round", "round", r+1, "of", rounds, "mode", "no tracer")
		for _, bc := range cases {
			run, err := b.runCase(bc)
			if err != nil {
				return err
			}
			off[bc.key] = append(off[bc.key], run.seconds)
		}
		slog.Info("bench round", "round", r+1, "of", rounds, "mode", "tracer")
		if err := b.tracedHalf(c.String("attach"), cases, r+1, on, res, false, false); err != nil {
			return err
		}
		if res.Enrich != nil {
			slog.Info("bench round", "round", r+1, "of", rounds, "mode", "tracer with enrichment")
			if err := b.tracedHalf(c.String("attach"), cases, r+1, onEnrich, res, true, false); err != nil {
				return err
			}
		}
		if journaled {
			slog.Info("bench round", "round", r+1, "of", rounds, "mode", "tracer with enrichment and the journal")
			if err := b.tracedHalf(c.String("attach"), cases, r+1, onJournal, res, true, true); err != nil {
				return err
			}
		}
	}
	for _, bc := range cases {
		cr := caseResult{Key: bc.key, Label: bc.label, Off: median(off[bc.key]), On: median(on[bc.key])}
		cr.Ratio = cr.On / cr.Off
		if res.Enrich != nil {
			cr.OnEnrich = median(onEnrich[bc.key])
			cr.RatioEnrich = cr.OnEnrich / cr.Off
		}
		if journaled {
			cr.OnJournal = median(onJournal[bc.key])
			cr.RatioJournal = cr.OnJournal / cr.Off
		}
		res.results = append(res.results, cr)
	}
	res.Lost = res.losses.Total()
	res.NotesLost = res.losses.Overruns
	res.Losses = lossMap(res.losses)
	res.RSSMiB = peakRSSMiB()
	if c.Bool("bpf-stats") {
		if res.Kernel, err = b.measureKernelCost(c.String("attach"), res.offSeconds("batch"), res.offSeconds("flush")); err != nil {
			return err
		}
	}

	w := c.App.Writer
	if c.String("output") == "json" {
		if err := json.NewEncoder(w).Encode(res); err != nil {
			return err
		}
	} else {
		printBench(w, res)
	}
	if res.Identity.mismatched() > 0 {
		for _, m := range res.mismatches {
			fmt.Fprintln(os.Stderr, "mismatch:", m)
		}
		return fmt.Errorf("identity check failed: %s", res.Identity)
	}
	if res.Enrich != nil && res.Enrich.Unnamed > 0 {
		return fmt.Errorf("enrichment check failed: %d deletions reported without their command line", res.Enrich.Unnamed)
	}
	return nil
}

// offSeconds is a case's median time with no tracer, 0 if it did not run.
func (r *benchResult) offSeconds(key string) float64 {
	for _, c := range r.results {
		if c.Key == key {
			return c.Off
		}
	}
	return 0
}

func printBench(w io.Writer, res *benchResult) {
	attach := res.Attach
	if res.Capture != "" {
		attach += " (" + res.Capture + " capture)"
	}
	fmt.Fprintf(w, "routetrace bench: %d IPv4 /24 routes per deletion case, %d round(s), attach %s, median of rounds\n",
		res.N, res.Rounds, attach)
	if res.Enrich == nil {
		fmt.Fprintf(w, "%-16s %12s %12s %8s\n", "", "no tracer", "tracer", "ratio")
		for _, c := range res.results {
			fmt.Fprintf(w, "%-16s %11.3fs %11.3fs %8.3f\n", c.Label, c.Off, c.On, c.Ratio)
		}
	} else if res.Journal == nil {
		fmt.Fprintf(w, "%-16s %12s %12s %8s %12s %8s %14s\n", "", "no tracer", "tracer", "ratio", "+ enrich", "ratio", "enrich adds")
		for _, c := range res.results {
			fmt.Fprintf(w, "%-16s %11.3fs %11.3fs %8.3f %11.3fs %8.3f %13.1f%%\n", c.Label, c.Off, c.On, c.Ratio,
				c.OnEnrich, c.RatioEnrich, (c.RatioEnrich/c.Ratio-1)*100)
		}
	} else {
		fmt.Fprintf(w, "%-16s %12s %12s %8s %12s %8s %12s %8s %14s\n", "", "no tracer", "tracer", "ratio", "+ enrich", "ratio",
			"+ journal", "ratio", "journal adds")
		for _, c := range res.results {
			fmt.Fprintf(w, "%-16s %11.3fs %11.3fs %8.3f %11.3fs %8.3f %11.3fs %8.3f %13.1f%%\n", c.Label, c.Off, c.On, c.Ratio,
				c.OnEnrich, c.RatioEnrich, c.OnJournal, c.RatioJournal, (c.RatioJournal/c.RatioEnrich-1)*100)
		}
		fmt.Fprintf(w, "journal: %d changes, %.1f MiB written\n", res.Journal.Records, float64(res.Journal.Bytes)/(1<<20))
	}
	if res.Expected > 0 {
		fmt.Fprintf(w, "identity: %d of %d deletions reported exactly once with the pid and comm that made them (%s)\n",
			res.Reported, res.Expected, res.Identity)
	}
	var s exporter.Summary
	s.SetLosses(res.losses)
	fmt.Fprintf(w, "%s (total %d)\n", s.LossLine(), res.Lost)
	fmt.Fprintf(w, "peak RSS %.1f MiB (%.1f MiB before the first tracer); BPF maps %.1f MiB in %d maps\n",
		res.RSSMiB, res.RSSBaseMiB, res.BPF.MapsMiB, res.BPF.Maps)
	fmt.Fprintln(w, "  (RSS is this whole process: tracer, its 16 MiB ring buffer mapped in, and the bench's 6 bytes per\n"+
		"  route of bookkeeping; the BPF figures are kernel memory charged as memlock, from /proc/self/fdinfo)")
	printEnrichResult(w, res.Enrich)
	printKernelCost(w, res.Kernel)
}

// benchNetns is a private namespace with one veth end for routes to use.
type benchNetns struct {
	name, path string
	inode      uint32
	oif        uint32 // v0
	n          int
	delFile    string
	dir        string
	self       string // this executable, for the workload children
	ip         string // iproute2's ip, and the comm it runs under
	ipComm     string
	ddCount    int
	udpCount   int
	capture    string // --capture
	synthPods  int    // --synthetic-pods
}

func newBenchNetns(n, ddCount, udpCount int) (*benchNetns, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable for the bench's workloads: %w", err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("the bench needs iproute2's ip: %w", err)
	}
	dir, err := os.MkdirTemp("", "routetrace-bench")
	if err != nil {
		return nil, err
	}
	b := &benchNetns{name: fmt.Sprintf("rtbench-%d", os.Getpid()), n: n, dir: dir, self: self,
		ip: ip, ipComm: commOf(ip), ddCount: ddCount, udpCount: udpCount, delFile: filepath.Join(dir, "del")}
	b.path = filepath.Join("/run/netns", b.name)
	if err := b.setup(); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *benchNetns) setup() error {
	for _, args := range [][]string{
		{"netns", "add", b.name},
		{"-n", b.name, "link", "set", "lo", "up"},
		{"-n", b.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"-n", b.name, "link", "set", "v0", "up"},
		{"-n", b.name, "link", "set", "v1", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	var err error
	if b.inode, err = rtnl.NetnsInode(b.path); err != nil {
		return err
	}
	links, err := rtnl.Links(b.path)
	if err != nil {
		return fmt.Errorf("listing the bench namespace's links: %w", err)
	}
	for idx, name := range links {
		if name == "v0" {
			b.oif = idx
		}
	}
	if b.oif == 0 {
		return fmt.Errorf("no v0 in the bench namespace: %v", links)
	}
	return writeBatch(b.delFile, "del", b.n)
}

// commOf is the comm a process exec'd from path runs under.
func commOf(path string) string {
	c := filepath.Base(path)
	return c[:min(len(c), 15)]
}

// benchRoute is the i-th route: 10.0.0.0/24, 10.0.1.0/24, ... counting on
// into 11/8 past 65536; addresses inside the private netns only, never
// used for traffic.
func benchRoute(i int) [4]byte {
	a := uint32(10<<24) + uint32(i)<<8
	return [4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), 0}
}

// writeBatch writes n `ip -batch` route commands for the bench's routes.
func writeBatch(path, verb string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		d := benchRoute(i)
		fmt.Fprintf(w, "route %s %d.%d.%d.0/24 dev v0 proto static\n", verb, d[0], d[1], d[2])
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

// runCase adds the routes a deletion case removes, then runs it.
func (b *benchNetns) runCase(bc benchCase) (caseRun, error) {
	if bc.deletes {
		if err := b.addRoutes(); err != nil {
			return caseRun{}, err
		}
	}
	run, err := bc.run(b)
	if err != nil {
		return caseRun{}, fmt.Errorf("bench case %s: %w", bc.key, err)
	}
	return run, nil
}

// addRoutes adds the N routes with the netlink client (untimed): ten times
// faster than ip -batch, which matters at a million.
func (b *benchNetns) addRoutes() error {
	rep, err := b.child("bench-client", "--netns", b.path, "--op", "add", "--n", strconv.Itoa(b.n), "--oif", strconv.Itoa(int(b.oif)))
	if err != nil {
		return fmt.Errorf("adding the bench routes: %w", err)
	}
	if rep.Failed > 0 {
		return fmt.Errorf("adding the bench routes: %d of %d failed, the first with %s", rep.Failed, rep.Requests, rep.FirstError)
	}
	return nil
}

// runTimed runs a command and times it from start to exit.
func runTimed(name string, args ...string) (caseRun, error) {
	cmd := exec.Command(name, args...)
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	start := time.Now()
	if err := onWorkloadCPU(cmd.Start); err != nil {
		return caseRun{}, fmt.Errorf("starting %s: %w", name, err)
	}
	err := cmd.Wait()
	run := caseRun{seconds: time.Since(start).Seconds(), pids: []uint32{uint32(cmd.Process.Pid)}, comm: commOf(name)}
	if err != nil {
		return run, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(output.String()))
	}
	return run, nil
}

func (b *benchNetns) ipBatchDelete() (caseRun, error) {
	r, err := runTimed(b.ip, "-n", b.name, "-batch", b.delFile)
	r.comm = b.ipComm
	return r, err
}

// ipFlush runs ip route flush until it has removed every route: iproute2
// stops, exit status 1, once its rounds have taken more than 30 s ("Flush
// not completed after 61 seconds, 1000000 entries remain", where the
// number is what its last round deleted), which a million routes on a
// loaded machine can take. Every run is timed, and each is an actor the
// deletions may name.
func (b *benchNetns) ipFlush() (caseRun, error) {
	run := caseRun{comm: b.ipComm}
	for range 10 {
		r, err := runTimed(b.ip, "-n", b.name, "route", "flush", "proto", "static")
		run.seconds += r.seconds
		run.pids = append(run.pids, r.pids...)
		if err == nil || !strings.Contains(err.Error(), "Flush not completed") {
			return run, err
		}
		slog.Warn("ip route flush gave up before the end; flushing again", "err", err)
	}
	return run, fmt.Errorf("ip route flush: routes left after %d runs", len(run.pids))
}

// clientDelete times only the client's loop, not its start: the cost per
// request is what the case is for.
func (b *benchNetns) clientDelete() (caseRun, error) {
	rep, err := b.child("bench-client", "--netns", b.path, "--op", "del", "--n", strconv.Itoa(b.n))
	if err != nil {
		return caseRun{}, err
	}
	if rep.Failed > 0 {
		return caseRun{}, fmt.Errorf("%d of %d deletes failed, the first with %s", rep.Failed, rep.Requests, rep.FirstError)
	}
	return caseRun{seconds: rep.Seconds, pids: []uint32{uint32(rep.Pid)}, comm: rep.Comm}, nil
}

func (b *benchNetns) dd() (caseRun, error) {
	return runTimed("dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count="+strconv.Itoa(b.ddCount))
}

func (b *benchNetns) udp() (caseRun, error) {
	rep, err := b.child("bench-udp", "--netns", b.path, "--count", strconv.Itoa(b.udpCount))
	if err != nil {
		return caseRun{}, err
	}
	if rep.Failed > 0 {
		return caseRun{}, fmt.Errorf("%d of %d sends failed, the first: %s", rep.Failed, rep.Requests, rep.FirstError)
	}
	return caseRun{seconds: rep.Seconds, pids: []uint32{uint32(rep.Pid)}, comm: rep.Comm}, nil
}

// child runs one of this executable's hidden workload commands and reads
// its report, which must come from the process started.
func (b *benchNetns) child(args ...string) (childReport, error) {
	cmd := exec.Command(b.self, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := onWorkloadCPU(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return childReport{}, fmt.Errorf("routetrace %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	var rep childReport
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		return childReport{}, fmt.Errorf("routetrace %s: reading its report %q: %w", args[0], stdout.String(), err)
	}
	if rep.Pid != cmd.Process.Pid {
		return childReport{}, fmt.Errorf("routetrace %s: report from pid %d, started pid %d", args[0], rep.Pid, cmd.Process.Pid)
	}
	return rep, nil
}

// journalResult is what the journal mode wrote, over its rounds.
type journalResult struct {
	Records uint64 `json:"records"`
	Bytes   int64  `json:"bytes"`
}

// tracedHalf runs the cases once with a tracer attached, checking after
// each deletion case that every deletion was reported once, by its actor.
func (b *benchNetns) tracedHalf(attach string, cases []benchCase, round int, on map[string][]float64, res *benchResult, enriched, journaled bool) error {
	opts := tracer.Options{Attach: attach, Capture: b.capture, Netns: []string{b.name}, Logger: slog.Default()}
	id := newIdentity(b.n, b.inode)
	emit := id.observe
	if journaled {
		// As trace journals: every event encoded and appended, in the
		// read loop, before the sinks.
		j, err := journal.Open(journal.Options{Dir: filepath.Join(b.dir, fmt.Sprintf("journal-%d", round)), MaxBytes: 4 << 30})
		if err != nil {
			return fmt.Errorf("opening the bench's journal: %w", err)
		}
		defer func() {
			j.Close()
			st := j.Stats()
			if res.Journal == nil {
				res.Journal = &journalResult{}
			}
			res.Journal.Records += st.Appended
			res.Journal.Bytes += st.Bytes
			os.RemoveAll(filepath.Join(b.dir, fmt.Sprintf("journal-%d", round)))
		}()
		w := &eventJournal{j: j}
		observe := id.observe
		emit = func(ev *event.Event) {
			w.append(ev)
			observe(ev)
		}
	}
	var stage *enrich.Stage
	if enriched {
		enr, err := b.newEnricher()
		if err != nil {
			return err
		}
		defer func() { res.Enrich.add(enr, id) }()
		defer enr.Close()
		id.wantProcess = true
		stage = enr.NewStage(emit)
		opts.OnProcess, emit = stage.AddProcess, stage.Write
	}
	t, err := tracer.New(opts)
	if err != nil {
		return err
	}
	defer t.Close()
	res.Attach = tierName(t)
	res.Capture = t.Capture()
	res.BPF = res.BPF.max(readBPFMemory())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := t.Run(ctx, emit)
		if stage != nil {
			stage.Close()
		}
		done <- err
	}()
	stop := func() error {
		cancel()
		return <-done
	}

	for _, bc := range cases {
		if bc.deletes {
			id.reset()
			if err := b.addRoutes(); err != nil {
				stop()
				return err
			}
			// The adds are not timed, and the tracer must be done with
			// them before the deletions are.
			id.settle(t, id.adds.Load)
			id.reset()
		}
		run, err := bc.run(b)
		if err != nil {
			stop()
			return fmt.Errorf("bench case %s under the tracer: %w", bc.key, err)
		}
		on[bc.key] = append(on[bc.key], run.seconds)
		// The kernel-side cost per program (bench_kernel.go) is read
		// here, around each traced case.
		if bc.deletes {
			// Until every deletion is in (the timing was taken above).
			id.settle(t, id.deletes.Load)
			counts, examples := id.check(run.pids, run.comm)
			res.Identity.add(counts)
			res.Expected += uint64(b.n)
			res.Reported += counts.Correct
			for _, e := range examples {
				res.mismatches = append(res.mismatches, fmt.Sprintf("%s, round %d: %s", bc.label, round, e))
			}
		}
	}
	if err := stop(); err != nil {
		return err
	}
	res.losses = addLosses(res.losses, t.Losses())
	return nil
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

// addLosses sums two snapshots counter by counter, whatever counters
// tracer.Losses has.
func addLosses(a, b tracer.Losses) tracer.Losses {
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range va.NumField() {
		if f := va.Field(i); f.CanUint() {
			f.SetUint(f.Uint() + vb.Field(i).Uint())
		}
	}
	return a
}

// lossMap is every counter of l by its summary JSON key.
func lossMap(l tracer.Losses) map[string]uint64 {
	var s exporter.Summary
	s.SetLosses(l)
	var out strings.Builder
	if err := s.WriteJSON(&out); err != nil {
		return nil
	}
	var v struct {
		Summary struct {
			Lost map[string]uint64 `json:"lost"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out.String()), &v); err != nil {
		return nil
	}
	return v.Summary.Lost
}

// peakRSSMiB is this process's high-water RSS (VmHWM).
func peakRSSMiB() float64 { return selfStatusMiB("VmHWM:") }

// selfStatusMiB reads one of /proc/self/status's kB fields, in MiB.
func selfStatusMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// bpfMemory is the kernel memory of this process's BPF maps, as the
// kernel charges it (memlock in /proc/self/fdinfo). Programs are left
// out: once attached their fds are closed (the links hold them), and
// their images are kilobytes.
type bpfMemory struct {
	Maps    int     `json:"maps"`
	MapsMiB float64 `json:"maps_mib"`
}

func (m bpfMemory) max(o bpfMemory) bpfMemory {
	if o.MapsMiB > m.MapsMiB {
		return o
	}
	return m
}

// readBPFMemory sums memlock over the open map fds (a map's fdinfo has
// map_type), each map once.
func readBPFMemory() bpfMemory {
	var m bpfMemory
	entries, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		return m
	}
	// An object open through two fds counts once.
	seen := map[string]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		var memlock float64
		var id string
		isMap := false
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			switch k {
			case "map_type":
				isMap = true
			case "map_id":
				id = k + strings.TrimSpace(v)
			case "memlock":
				memlock, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
		if id != "" {
			if seen[id] {
				continue
			}
			seen[id] = true
		}
		if isMap {
			m.Maps++
			m.MapsMiB += memlock / (1 << 20)
		}
	}
	return m
}
