package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/exporter"
	"github.com/routetrace/routetrace/internal/sdnotify"
	"github.com/routetrace/routetrace/policy"
	"github.com/routetrace/routetrace/tracer"
)

func traceCommand() *cli.Command {
	return &cli.Command{
		Name:  "trace",
		Usage: "report routing changes live, with who made them",
		Description: "Prints one line per route, rule or nexthop change until interrupted (Ctrl-C) or --duration\n" +
			"ends, then a summary on stderr: counts by actor, operation and object, and every loss counter\n" +
			"by name (ring records, overruns, truncated, unconfirmed, evicted, read errors, listener gaps,\n" +
			"unlistened). With --output json, stdout ends with one {\"summary\":{...}} object as well.\n\n" +
			"Exit status: 0 when nothing was lost; 3 when the run ended normally but any loss counter is\n" +
			"above zero (changes may be missing from the report); 1 on any other error.\n\n" +
			"Examples:\n" +
			"  sudo routetrace trace\n" +
			"  sudo routetrace trace --op delete --dst 10.244.0.0/16\n" +
			"  sudo routetrace trace --output json --duration 10m > changes.jsonl\n" +
			"  sudo routetrace trace --comm systemd-networkd --object rule\n" +
			"  sudo routetrace trace --netns cni-1234   # only that namespace (and routetrace's own)\n" +
			"  sudo routetrace trace --unit systemd-networkd.service\n" +
			"  sudo routetrace trace --pod 'kube-system/calico-node-*' --output json\n" +
			"  sudo routetrace trace --cni calico --op delete   # who removes Calico's pod routes\n" +
			"  sudo routetrace trace --ioctl            # also name who runs route(8)/ifconfig (taxes every syscall)\n" +
			"  sudo routetrace trace --otlp-endpoint otel-collector.monitoring:4317 --otlp-insecure --metrics-addr 9464\n" +
			"  sudo OTEL_EXPORTER_OTLP_ENDPOINT=https://tempo:4317 routetrace trace --output json\n\n" +
			"Every change is also appended to the node's journal (<state-dir>/journal, default /var/lib/routetrace),\n" +
			"whatever the filters: `routetrace history` and `routetrace why` read it later. With an OTLP endpoint\n" +
			"(flag or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT), changes are sent from the journal as spans: a backend\n" +
			"that is down delays them, a restart of routetrace resumes where the backend stopped acknowledging.",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text (aligned lines) or json (JSON lines, fields in the README)"},
			&cli.StringFlag{Name: "color", Value: "auto", Usage: "auto, always or never (text output)"},
			&cli.StringFlag{Name: "attach", Value: "auto", Usage: "auto, fentry, kprobe or tracepoint: force one attach tier"},
			captureFlag(),
			&cli.BoolFlag{Name: "ioctl", Usage: "with the socket capture, also see route ioctls (net-tools route) that fail, and name ioctls on kernels before 6.6. " +
				"Off by default: it attaches the ioctl syscall tracepoints, which put every syscall of every process on the node on the kernel's slow path " +
				"(measured: dd bs=1 1.1-1.35x as long). Without it, an ioctl's change is still reported from its notification, named after the process " +
				"where the kernel has the sk_data_ready BTF tracepoint (6.6+; routetrace probe says), with an unknown actor before. The syscall capture always has it"},
			&cli.StringFlag{Name: "policy", Usage: "judge every change by this enforcement policy (YAML, see README#enforce) and report what it would have refused " +
				"(verdict would-block): audit only, nothing is refused or repaired (that is routetrace enforce)"},
			&cli.StringSliceFlag{Name: "netns", Usage: "only trace this network namespace (name in /run/netns or a path) and routetrace's own; repeatable. Default: every namespace on the node, followed as they come and go"},
			&cli.BoolFlag{Name: "enrich", Value: true, Usage: "name actors by unit, pod, container and command line and victims by link kind, CNI and pod (--enrich=false: only what the kernel records)"},
			&cli.StringFlag{Name: "cri-socket", Usage: "the container runtime's CRI socket for pod and container names (default: the first of containerd's, CRI-O's, k3s's and cri-dockerd's that exists; 'none' to not ask)"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "also read this node's pods from the Kubernetes API: a kubeconfig path, or 'in-cluster' (default: off; the CRI socket alone names pods)"},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"NODE_NAME"}, Usage: "this node's name in Kubernetes (default: the host name)"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (default: until interrupted)"},
			&cli.StringFlag{Name: "ready-file", Hidden: true, Usage: "touch this file once attached (for tests)"},
			&cli.IntFlag{Name: "synthetic-pods", Hidden: true, Usage: "add this many generated pods to the pod sources (for memory tests)"},
		}, filterFlags()...), recorderFlags()...),
		Action: runTrace,
	}
}

// filterFlags select changes, for trace and history alike.
func filterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "op", Usage: "only these operations: add, replace, delete, flush"},
		&cli.StringSliceFlag{Name: "object", Usage: "only these objects: route, rule, nexthop"},
		&cli.StringSliceFlag{Name: "family", Usage: "only this family: inet or inet6"},
		&cli.StringSliceFlag{Name: "table", Usage: "only these tables: a number, or main, local, default"},
		&cli.StringSliceFlag{Name: "dst", Usage: "only destinations inside this CIDR (10.244.0.0/16 matches 10.244.3.0/24)"},
		&cli.StringSliceFlag{Name: "comm", Usage: "only changes by processes with this command name"},
		&cli.StringSliceFlag{Name: "pid", Usage: "only changes by this process id"},
		&cli.StringSliceFlag{Name: "unit", Usage: "only changes by processes of this systemd unit (glob: 'systemd-networkd.service', 'run-u*.scope')"},
		&cli.StringSliceFlag{Name: "pod", Usage: "only changes made by, or hitting, this pod: NAMESPACE/NAME, globs allowed ('kube-system/calico-node-*'); a bare NAME matches in any namespace"},
		&cli.StringSliceFlag{Name: "container", Usage: "only changes by this container: its name (glob) or id (12+ hex digits)"},
		&cli.StringSliceFlag{Name: "verdict", Usage: "only changes a policy judged so: would-block, blocked, repaired, or none (see --policy and routetrace enforce)"},
		&cli.StringSliceFlag{Name: "cni", Usage: "only changes to routes on this CNI's interfaces: calico, cilium, flannel, aws-cni, weave, kube-router, ptp, bridge (globs)"},
	}
}

func runTrace(c *cli.Context) error {
	var judge *judgeStage
	if path := c.String("policy"); path != "" {
		p, err := loadPolicy(path)
		if err != nil {
			return err
		}
		judge = newJudgeStage(p, path, policy.ModeAudit)
	}
	return runTraceWith(c, judge)
}

// runTraceWith is trace, with a policy's judge between enrichment and the
// journal when judge is not nil (trace --policy, enforce): every change is
// judged before it is journaled, exported or shown.
func runTraceWith(c *cli.Context, judge *judgeStage) error {
	if err := checkAttach(c.String("attach")); err != nil {
		return err
	}
	if err := checkCaptureFlag(c.String("capture")); err != nil {
		return err
	}
	filter, err := parseFilter(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var summary exporter.Summary
	var writeErr error
	sink, err := newSink(c)
	if err != nil {
		return err
	}
	needsEnrich := len(filter.Units)+len(filter.Pods)+len(filter.Containers)+len(filter.CNIs) > 0
	if needsEnrich && !c.Bool("enrich") {
		return fmt.Errorf("--unit, --pod, --container and --cni need enrichment: drop --enrich=false")
	}
	var enr *enrich.Enricher
	if c.Bool("enrich") {
		eopts := enrich.Options{
			CRISocket:  c.String("cri-socket"),
			Kubeconfig: c.String("kubeconfig"),
			NodeName:   c.String("node-name"),
			Netns:      c.StringSlice("netns"),
			Logger:     slog.Default(),
		}
		if n := c.Int("synthetic-pods"); n > 0 {
			eopts.Sources = []enrich.Source{enrich.SyntheticPods(n)}
		}
		enr, err = enrich.New(eopts)
		if err != nil {
			return fmt.Errorf("starting enrichment (--enrich=false runs without it): %w", err)
		}
		defer enr.Close()
		enr.WaitForPods()
	}
	opts := tracer.Options{
		Attach:  c.String("attach"),
		Capture: c.String("capture"),
		Ioctl:   c.Bool("ioctl"),
		Netns:   c.StringSlice("netns"),
		Logger:  slog.Default(),
	}
	if judge != nil {
		opts.LowLatency = judge.lowLatency
		defer judge.close()
	}
	var stage *enrich.Stage
	var rec *recorder
	write := func(ev *event.Event) {
		if judge != nil {
			judge.Judge(ev)
		}
		rec.Write(ev) // every change, whatever this run's filters show
		if !filter.Match(ev) {
			return
		}
		summary.Write(ev)
		if err := sink.Write(ev); err != nil && writeErr == nil {
			writeErr = err
			stop() // stdout is gone (closed pipe): nothing left to report to
		}
	}
	emit := write
	if enr != nil {
		stage = enr.NewStage(write) // serializes its callers
		opts.OnProcess = stage.AddProcess
		emit = stage.Write
	} else if judge != nil && judge.start != nil {
		// The enforcer's refusals come from a goroutine of their own.
		var mu sync.Mutex
		emit = func(ev *event.Event) {
			mu.Lock()
			write(ev)
			mu.Unlock()
		}
	}
	t, err := tracer.New(opts)
	if err != nil {
		return fmt.Errorf("starting the tracer: %w", err)
	}
	defer t.Close()
	logTiers(t)
	rec, err = newRecorder(c, t.Losses)
	if err != nil {
		return err
	}

	if d := c.Duration("duration"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if judge != nil {
		if enr != nil {
			judge.enricher.Store(enr)
		}
		go judge.watch(ctx)
		if judge.start != nil {
			if err := judge.start(ctx, emit); err != nil {
				return err
			}
		}
	}
	if f := c.String("ready-file"); f != "" {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return fmt.Errorf("writing --ready-file: %w", err)
		}
	}
	notifySystemd("READY=1\nSTATUS=" + readyStatus(t))

	err = t.Run(ctx, emit)
	notifySystemd("STOPPING=1\nSTATUS=stopping: sending what the journal holds")
	if stage != nil {
		stage.Close() // the events held for a pod listing
	}
	if cerr := sink.Close(); err == nil {
		err = cerr
	}
	rec.close() // sends what the backend has not acknowledged, for a few seconds at most
	summary.SetLosses(t.Losses())
	if err == nil && writeErr == nil && c.String("output") == "json" {
		// The last line of stdout, after every event.
		writeErr = summary.WriteJSON(c.App.Writer)
	}
	fmt.Fprintln(os.Stderr, summary.String())
	if d := summary.Detail(); d != "" {
		fmt.Fprintln(os.Stderr, d)
	}
	if enr != nil {
		fmt.Fprintln(os.Stderr, enrichLine(enr))
	}
	fmt.Fprintln(os.Stderr, rec.summary())
	if judge != nil {
		fmt.Fprintln(os.Stderr, judge.summary())
	}
	fmt.Fprintln(os.Stderr, summary.LossLine())
	if err != nil {
		return err
	}
	if writeErr != nil {
		return fmt.Errorf("writing output: %w", writeErr)
	}
	if n := summary.Lost(); n > 0 {
		return lostError{n}
	}
	return nil
}

// exitLost is the exit status of a run that ended as asked but may have
// missed changes: distinct from 1 (bad flags, no privileges, a failed
// load), so that a script can tell "the report is incomplete" from "the
// tracer did not run".
const exitLost = 3

// lostError ends a run whose loss counters are not all zero.
type lostError struct{ total uint64 }

func (e lostError) Error() string {
	return fmt.Sprintf("routetrace: %d lost (see the \"lost:\" line): changes may be missing from this report (exit status %d)",
		e.total, exitLost)
}

func (e lostError) ExitCode() int { return exitLost }

// notifySystemd tells systemd (Type=notify, routetrace.service) how the
// run is doing; outside systemd it does nothing. A failure is logged, not
// fatal: systemd then times the start out and says so itself.
func notifySystemd(state string) {
	if _, err := sdnotify.Notify(state); err != nil {
		slog.Warn("systemd notification failed", "err", err)
	}
}

// readyStatus is the one line `systemctl status routetrace` shows.
func readyStatus(t *tracer.Tracer) string {
	counts := map[event.Attach]int{}
	for _, h := range t.Hooks() {
		counts[h.Tier]++
	}
	return fmt.Sprintf("tracing: %d fentry, %d kprobe hooks; tier 3 %v, capture %s",
		counts[event.AttachFentry], counts[event.AttachKprobe], t.Tier3(), t.Capture())
}

func logTiers(t *tracer.Tracer) {
	counts := map[event.Attach]int{}
	for _, h := range t.Hooks() {
		counts[h.Tier]++
	}
	slog.Info("attached", "fentry", counts[event.AttachFentry], "kprobe", counts[event.AttachKprobe],
		"tier3", t.Tier3(), "capture", t.Capture(), "hint", "`routetrace probe` shows each hook")
}

func newSink(c *cli.Context) (exporter.Sink, error) {
	out := c.App.Writer
	switch c.String("output") {
	case "text":
		color := false
		switch c.String("color") {
		case "auto":
			color = exporter.IsTerminal(out) && os.Getenv("NO_COLOR") == ""
		case "always":
			color = true
		case "never":
		default:
			return nil, fmt.Errorf("--color %q: want auto, always or never", c.String("color"))
		}
		return exporter.NewText(out, exporter.TextOptions{Color: color}), nil
	case "json":
		return exporter.NewJSON(out), nil
	}
	return nil, fmt.Errorf("--output %q: want text or json", c.String("output"))
}

// parseFilter turns the filter flags into an event.Filter, naming the flag
// and the accepted values on a bad one.
func parseFilter(c *cli.Context) (*event.Filter, error) {
	var f event.Filter
	for _, s := range splitAll(c.StringSlice("op")) {
		op, ok := event.ParseOp(s)
		if !ok {
			return nil, fmt.Errorf("--op %q: want add, replace, delete or flush", s)
		}
		f.Ops = append(f.Ops, op)
	}
	for _, s := range splitAll(c.StringSlice("object")) {
		obj, ok := event.ParseObject(s)
		if !ok || obj > event.ObjectNexthop {
			return nil, fmt.Errorf("--object %q: want route, rule or nexthop", s)
		}
		f.Objects = append(f.Objects, obj)
	}
	for _, s := range splitAll(c.StringSlice("family")) {
		switch s {
		case "inet", "ipv4", "4":
			f.Families = append(f.Families, event.FamilyInet)
		case "inet6", "ipv6", "6":
			f.Families = append(f.Families, event.FamilyInet6)
		default:
			return nil, fmt.Errorf("--family %q: want inet or inet6", s)
		}
	}
	for _, s := range splitAll(c.StringSlice("table")) {
		switch s {
		case "main":
			f.Tables = append(f.Tables, 254)
		case "local":
			f.Tables = append(f.Tables, 255)
		case "default":
			f.Tables = append(f.Tables, 253)
		default:
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--table %q: want a number, main, local or default", s)
			}
			f.Tables = append(f.Tables, uint32(n))
		}
	}
	for _, s := range splitAll(c.StringSlice("dst")) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("--dst %q: want a CIDR like 10.244.0.0/16 or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		f.Dst = append(f.Dst, p.Masked())
	}
	for _, s := range splitAll(c.StringSlice("verdict")) {
		v, ok := event.ParseVerdict(s)
		if !ok && s != "none" {
			return nil, fmt.Errorf("--verdict %q: want would-block, blocked, repaired or none", s)
		}
		f.Verdicts = append(f.Verdicts, v)
	}
	f.Comms = splitAll(c.StringSlice("comm"))
	for _, fl := range []struct {
		name string
		dst  *[]string
	}{{"unit", &f.Units}, {"pod", &f.Pods}, {"container", &f.Containers}, {"cni", &f.CNIs}} {
		for _, g := range splitAll(c.StringSlice(fl.name)) {
			if err := event.ValidGlob(g); err != nil {
				return nil, fmt.Errorf("--%s %q: a malformed glob: %w", fl.name, g, err)
			}
			*fl.dst = append(*fl.dst, g)
		}
	}
	for _, s := range splitAll(c.StringSlice("pid")) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--pid %q: want a process id", s)
		}
		f.Pids = append(f.Pids, uint32(n))
	}
	return &f, nil
}

// captureFlag is --capture, for trace and bench.
func captureFlag() cli.Flag {
	return &cli.StringFlag{Name: "capture", Value: "auto", Usage: "how tier 3 (used where fentry and kprobes are refused) captures requests: " +
		"auto (socket where the kernel allows it), socket (BTF tracepoints where netlink skbs are freed and read: no cost to other syscalls) " +
		"or syscalls (the syscall tracepoints: every syscall on the node takes the slow path)"}
}

func checkCaptureFlag(mode string) error {
	switch mode {
	case tracer.CaptureAuto, tracer.CaptureSocket, tracer.CaptureSyscalls:
		return nil
	}
	return fmt.Errorf("--capture %q: want auto, socket or syscalls", mode)
}

// checkAttach rejects a bad --attach before anything is loaded: tracer.New
// would refuse it too, but without naming the flag.
func checkAttach(mode string) error {
	if _, ok := event.ParseAttach(mode); ok || mode == "auto" {
		return nil
	}
	return fmt.Errorf("--attach %q: want auto, fentry, kprobe or tracepoint", mode)
}

// splitAll accepts both repeated flags and comma-separated values.
func splitAll(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// enrichLine says on stderr what enrichment found, so that a run whose
// pods were not named says why.
func enrichLine(e *enrich.Enricher) string {
	st := e.Stats()
	var names []string
	for _, s := range e.Sources() {
		names = append(names, s.Name())
	}
	src := "no pod source (no CRI socket found; --cri-socket, --kubeconfig)"
	if len(names) > 0 {
		src = fmt.Sprintf("pods from %s: %d listed, %d listing errors", strings.Join(names, "+"), e.Pods(), st.RefreshErrs.Load())
	}
	return fmt.Sprintf("enrichment: actors named from the kernel's process records %d times, from /proc %d; %s; %d changes held for a pod listing (%d in vain)",
		st.ProcHits.Load(), st.ProcMisses.Load(), src, st.Held.Load(), st.HeldTimedOut.Load())
}
