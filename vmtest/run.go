package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// harness is the state shared by every kernel of one run.
type harness struct {
	opts     *options
	arch     *arch
	qemu     string
	cache    *cache
	user     *userland
	spec     *runSpec
	runDir   string
	overlay  string
	accel    string // decided on the first kernel, when there is one to probe with
	tiers    []string
	binNames []string
	prepMu   sync.Mutex // kernels are prepared one at a time (see prepareKernel)
}

// run returns whether every kernel booted and no test failed; err is for
// problems that stop the whole run, such as a missing tool.
func run(ctx context.Context, o *options) (bool, error) {
	if o.cpus < 1 || o.memory < 256 {
		return false, fmt.Errorf("--cpus must be >= 1 and --memory >= 256")
	}
	list, err := readKernelList(o.kernelsFile)
	if err != nil {
		return false, err
	}
	entries, err := selectKernels(list, o.kernel, o.arch)
	if err != nil {
		return false, err
	}
	c, err := openCache()
	if err != nil {
		return false, err
	}
	var tiers []string
	for _, t := range strings.Split(o.tiers, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tiers = append(tiers, t)
		}
	}
	c.pruneRuns(keepRuns)
	if o.scenario != "" {
		if o.scenario != "networkd" {
			return false, fmt.Errorf("--scenario %q: the only scenario is networkd", o.scenario)
		}
		// One harness per architecture (each needs its own emulator and
		// root filesystem), all at once: the guest slots bound how many
		// guests run. One summary for all.
		start := time.Now()
		if len(tiers) == 1 && tiers[0] == "auto" {
			tiers = slices.Clone(allTiers)
		}
		groups := byArch(entries)
		hs := make([]*harness, len(groups))
		for i, g := range groups {
			if hs[i], err = newHarness(o, g.arch, c); err != nil {
				return false, err
			}
			hs[i].tiers = tiers
		}
		all := make([][]*incidentKernel, len(groups))
		errs := make([]error, len(groups))
		var wg sync.WaitGroup
		for i, g := range groups {
			wg.Go(func() { all[i], errs[i] = hs[i].runIncident(ctx, o, g.entries) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return false, err
		}
		var results []*incidentKernel
		var runDirs []string
		for i := range groups {
			results = append(results, all[i]...)
			runDirs = append(runDirs, hs[i].runDir)
		}
		return writeIncidentReports(o, results, tiers, start, runDirs)
	}
	if len(tiers) == 0 {
		tiers = []string{"auto"}
	}
	// MkdirTemp, not a bare timestamp: two runs may start in the same second.
	runDir, err := os.MkdirTemp(c.path("runs"), time.Now().Format("20060102-150405-"))
	if err != nil {
		return false, fmt.Errorf("creating run directory: %w", err)
	}
	// Every architecture's harness is set up before any boot, so a test
	// binary built for the wrong one fails the run at once, not after the
	// first architecture's kernels.
	groups := byArch(entries)
	hs := make([]*harness, len(groups))
	for i, g := range groups {
		if hs[i], err = newHarness(o, g.arch, c); err != nil {
			return false, err
		}
		h := hs[i]
		h.runDir, h.tiers = runDir, tiers
		if h.spec, err = buildSpec(o, h.arch, h.user.root); err != nil {
			return false, err
		}
		h.spec.tiers = h.tiers
		for _, b := range h.spec.binaries {
			h.binNames = append(h.binNames, filepath.Base(b))
		}
		if h.spec.bench {
			h.binNames = []string{benchName}
		}
		h.overlay = filepath.Join(runDir, "overlay-"+h.arch.name+".cpio")
		if err := overlayImage(h.spec, h.overlay); err != nil {
			return false, fmt.Errorf("%s guests: %w", h.arch.name, err)
		}
		// The overlay holds copies of the test binaries; logs are what a
		// later look at the run needs.
		defer os.Remove(h.overlay)
	}
	var labels []string
	for _, e := range entries {
		labels = append(labels, e.label())
	}
	slog.Info("run started", "kernels", labels, "tiers", tiers, "binaries", hs[0].binNames, "logs", runDir)

	// The architectures' kernels boot side by side: the guest slots, not
	// the groups, bound how many run at once.
	all := make([][]*kernelResult, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		h := hs[i]
		all[i] = make([]*kernelResult, len(g.entries))
		var glabels []string
		for _, e := range g.entries {
			glabels = append(glabels, e.label())
		}
		wg.Go(func() {
			forEachKernel(ctx, h.slots(), glabels, o.parallel, func(j int) {
				if ctx.Err() == nil {
					all[i][j] = h.runKernel(ctx, g.entries[j])
				}
			})
		})
	}
	wg.Wait()
	var results []*kernelResult
	for _, rs := range all {
		for _, r := range rs {
			if r != nil {
				results = append(results, r)
			}
		}
	}
	binNames := hs[0].binNames

	ok := len(results) == len(entries)
	for _, r := range results {
		if r.err != nil {
			ok = false
		}
		for _, c := range summarize(r, tiers, binNames) {
			ok = ok && c.ok()
		}
	}
	writeSummary(os.Stdout, results, tiers, binNames)
	if hs[0].spec.bench {
		writeBenchSummary(os.Stdout, results, tiers)
	}
	fmt.Printf("\nconsole logs: %s\n", runDir)
	if o.summaryJSON != "" && !hs[0].spec.bench {
		if err := writeJSONFile(o.summaryJSON, testsReport(results, tiers, binNames)); err != nil {
			return ok, err
		}
	}
	if o.summaryMD != "" {
		f, err := os.Create(o.summaryMD)
		if err != nil {
			return ok, fmt.Errorf("writing markdown summary: %w", err)
		}
		if hs[0].spec.bench {
			writeBenchMarkdown(f, results, tiers)
		} else {
			writeMarkdown(f, results, tiers, binNames)
		}
		if err := f.Close(); err != nil {
			return ok, fmt.Errorf("writing markdown summary: %w", err)
		}
	}
	return ok, nil
}

// archGroup is the kernels of one architecture, in list order.
type archGroup struct {
	arch    *arch
	entries []kernelEntry
}

func byArch(entries []kernelEntry) []archGroup {
	var groups []archGroup
	for _, e := range entries {
		i := slices.IndexFunc(groups, func(g archGroup) bool { return g.arch.name == e.arch })
		if i < 0 {
			// selectKernels and the list parser only pass known arches.
			a, _ := lookupArch(e.arch)
			groups = append(groups, archGroup{arch: a})
			i = len(groups) - 1
		}
		groups[i].entries = append(groups[i].entries, e)
	}
	return groups
}

// newHarness finds the emulator and guest userland of one architecture.
func newHarness(o *options, a *arch, c *cache) (*harness, error) {
	h := &harness{opts: o, arch: a, cache: c}
	var err error
	if h.qemu, err = needTool(a.qemu, a.qemuPkg); err != nil {
		return nil, err
	}
	switch o.accel {
	case "auto":
		if !a.native() {
			h.accel = "tcg" // KVM cannot run a foreign architecture
		}
	case "kvm", "tcg":
		h.accel = o.accel
	default:
		return nil, fmt.Errorf("--accel %q: want auto, kvm or tcg", o.accel)
	}
	if o.icount >= 0 {
		if h.accel == "kvm" {
			return nil, fmt.Errorf("--icount needs TCG, not --accel kvm")
		}
		h.accel = "tcg"
	}
	if h.user, err = findUserland(a, c); err != nil {
		return nil, err
	}
	return h, nil
}

// kernelTiers are the tiers a run gives one kernel: those asked for that
// the kernel offers, in the run's order ("auto" is always offered).
func kernelTiers(run []string, e kernelEntry) []string {
	var out []string
	for _, t := range run {
		if e.offers(t) {
			out = append(out, t)
		}
	}
	return out
}

// kernelExpect is ROUTETRACE_VMTEST for one kernel: the tiers it offers,
// unless --expect-tiers narrowed them for the run (the enforcer's run
// expects none). A tier the kernel does not offer is never expected, so a
// test forcing it skips with the kernel's refusal.
func kernelExpect(spec *runSpec, e kernelEntry) []string {
	if !spec.narrowed {
		return e.tiers
	}
	var out []string
	for _, t := range spec.expect {
		if e.offers(t) {
			out = append(out, t)
		}
	}
	return out
}

// archPlaceholder in a path flag stands for the guest's architecture, so
// one run finds each kernel's binaries: --test-binary bin/{arch}/x.test.
const archPlaceholder = "{arch}"

func forArch(p string, a *arch) string { return strings.ReplaceAll(p, archPlaceholder, a.name) }

// buildSpec reads the test flags for guests of architecture a, replacing
// {arch} in the paths of binaries and extra files.
func buildSpec(o *options, a *arch, root *sysroot) (*runSpec, error) {
	spec := &runSpec{env: o.env.vals, extra: map[string]string{}, arch: a, root: root}
	for _, b := range o.binaries.vals {
		b = forArch(b, a)
		abs, err := filepath.Abs(b)
		if err != nil {
			return nil, fmt.Errorf("test binary %s: %w", b, err)
		}
		if !fileExists(abs) {
			return nil, fmt.Errorf("test binary %s does not exist; build it with CGO_ENABLED=0 go test -c -o %s ./pkg", b, b)
		}
		spec.binaries = append(spec.binaries, abs)
	}
	for _, e := range o.extraFiles.vals {
		src, dst, ok := strings.Cut(e, ":")
		if !ok || src == "" || !strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("--extra-file %q: want SRC:/absolute/guest/path", e)
		}
		src = forArch(src, a)
		if !fileExists(src) {
			return nil, fmt.Errorf("--extra-file %s: no such file", src)
		}
		spec.extra[dst] = src
	}
	args, err := splitArgs(o.testArgs)
	if err != nil {
		return nil, fmt.Errorf("--test-args: %w", err)
	}
	spec.testArgs = args
	spec.narrowed = o.expectTiers != ""
	for _, t := range strings.Split(o.expectTiers, ",") {
		switch t = strings.TrimSpace(t); t {
		case "", "none":
		case "fentry", "kprobe", "tracepoint":
			spec.expect = append(spec.expect, t)
		default:
			return nil, fmt.Errorf("--expect-tiers: unknown tier %q (want fentry, kprobe, tracepoint or none)", t)
		}
	}
	if o.bench {
		return benchSpec(o, spec, a)
	}
	return spec, nil
}

// benchName stands for the test binary's name in a --bench run's results.
const benchName = "bench"

// benchSpec makes a run of `routetrace bench --pin` per tier (without
// --pin on one vCPU): the guest runs it with the arguments as its test
// arguments (see init.sh).
func benchSpec(o *options, spec *runSpec, a *arch) (*runSpec, error) {
	routetrace := forArch(o.routetrace, a)
	switch {
	case len(spec.binaries) > 0 || o.testArgs != "":
		return nil, fmt.Errorf("--bench runs routetrace bench, not test binaries: drop --test-binary and --test-args")
	case routetrace == "" || !fileExists(routetrace):
		return nil, fmt.Errorf("--bench needs --routetrace, a routetrace binary (CGO_ENABLED=0 go build ./cmd/routetrace)")
	}
	args, err := splitArgs(o.benchArgs)
	if err != nil {
		return nil, fmt.Errorf("--bench-args: %w", err)
	}
	spec.bench = true
	spec.testArgs = append([]string{"--output", "json"}, args...)
	// With one vCPU the tracer and the workload share it, as before --pin
	// existed; with --icount that still gives clean per-program counts.
	if o.cpus >= 2 {
		spec.testArgs = append([]string{"--pin"}, spec.testArgs...)
	}
	spec.extra["/usr/local/bin/routetrace"] = routetrace
	return spec, nil
}

// forEachKernel calls fn(0..n-1), at most parallel at a time, each once it
// holds one of the machine's guest slots (slots.go). Each TCG guest keeps
// one host core busy.
func forEachKernel(ctx context.Context, slots guestSlots, labels []string, parallel int, fn func(i int)) {
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i := range labels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			slot, err := slots.acquire(ctx, labels[i])
			if err != nil {
				return // ctx ended: the caller reports the kernel as not run
			}
			defer slot.Close()
			start := time.Now()
			fn(i)
			if ctx.Err() == nil {
				slots.record(labels[i], time.Since(start))
			}
		}()
	}
	wg.Wait()
}

// prepareKernel fetches a kernel and builds its initrd. Kernels run in
// parallel (--parallel) but are prepared one at a time: apt and the cache
// are not shared safely, and KVM is probed once.
func (h *harness) prepareKernel(ctx context.Context, e kernelEntry, r *kernelResult) (vm, string, error) {
	h.prepMu.Lock()
	defer h.prepMu.Unlock()
	pkg, err := resolveKernel(e, h.cache)
	if err != nil {
		return vm{}, "", err
	}
	if r.k, err = fetchKernel(pkg, h.arch, h.cache); err != nil {
		return vm{}, "", err
	}
	k := r.k
	base, err := baseImage(k, h.arch, h.user, h.cache, strings.Split(h.opts.modules, ","))
	if err != nil {
		return vm{}, "", err
	}
	// This kernel's configuration: the run's tiers it offers.
	spec := *h.spec
	spec.tiers, spec.expect = kernelTiers(h.tiers, e), kernelExpect(h.spec, e)
	spec.independentOn = e.independentOn
	cfg := filepath.Join(h.runDir, k.release+".config.cpio")
	if err := configImage(&spec, cfg); err != nil {
		return vm{}, "", err
	}
	defer os.Remove(cfg)
	initrd := filepath.Join(h.runDir, k.release+".initrd")
	if err := concatFiles(initrd, base, h.overlay, cfg); err != nil {
		return vm{}, "", err
	}
	v := vm{
		arch: h.arch, qemu: h.qemu, cpus: h.opts.cpus, memory: h.opts.memory,
		kernel: k.image, initrd: initrd, cmdline: kernelCmdline(h.arch, h.opts.kernelArgs),
	}
	if h.opts.icount >= 0 {
		// sleep=off: an idle guest jumps to its next timer at once. (6.1
		// with two vCPUs hangs early in boot under -icount, sleep or not;
		// 6.12 boots, and both boot with one vCPU.)
		v.extra = append(v.extra, "-icount", fmt.Sprintf("shift=%d,sleep=off", h.opts.icount))
	}
	if h.accel == "" {
		h.accel = h.chooseAccel(ctx, v)
	}
	v.accel, r.accel = h.accel, h.accel
	return v, initrd, nil
}

// runKernel fetches, boots and tests one kernel. Its failures end up in the
// result rather than stopping the run, so one broken kernel still leaves a
// table for the others.
func (h *harness) runKernel(ctx context.Context, e kernelEntry) *kernelResult {
	start := time.Now()
	r := &kernelResult{label: e.label(), entry: e}
	defer func() { r.total = time.Since(start) }()

	v, initrd, err := h.prepareKernel(ctx, e, r)
	if err != nil {
		r.err = err
		return r
	}
	defer os.Remove(initrd)
	k := r.k

	r.logPath = filepath.Join(h.runDir, k.release+".log")
	logFile, err := os.Create(r.logPath)
	if err != nil {
		r.err = fmt.Errorf("creating console log: %w", err)
		return r
	}
	defer logFile.Close()
	var console io.Writer = os.Stdout
	if h.opts.quiet {
		console = io.Discard
	}
	prefix := "[" + k.version + "] "

	slog.Info("booting", "kernel", k.version, "package", k.pkg, "accel", v.accel, "timeout", h.opts.timeout, "log", r.logPath)
	bootCtx, cancel := context.WithTimeoutCause(ctx, h.opts.timeout, fmt.Errorf("timed out after %s", h.opts.timeout))
	defer cancel()
	p := &consoleParser{res: r, start: time.Now()}
	err = v.run(bootCtx, func(line string) {
		fmt.Fprintln(logFile, line)
		fmt.Fprintln(console, prefix+line)
		p.line(line)
	})
	switch {
	case err != nil:
		r.err = fmt.Errorf("guest did not finish: %w (log: %s)", err, r.logPath)
	case !r.done && r.panic != "":
		r.err = fmt.Errorf("guest stopped before its tests finished: %s (log: %s)", r.panic, r.logPath)
	case !r.done:
		r.err = fmt.Errorf("guest stopped before its tests finished (log: %s)", r.logPath)
	}
	slog.Info("kernel finished", "kernel", k.version, "guest_ok", r.err == nil, "took", time.Since(start).Round(100*time.Millisecond))
	return r
}

// chooseAccel picks KVM only if a throwaway boot with it works.
func (h *harness) chooseAccel(ctx context.Context, v vm) string {
	probe := filepath.Join(h.runDir, "kvm-probe.cpio")
	defer os.Remove(probe)
	if err := probeImage(h.arch, h.user, probe); err != nil {
		slog.Warn("cannot build KVM probe image, using TCG", "err", err)
		return "tcg"
	}
	start := time.Now()
	if err := probeKVM(ctx, v, probe); err != nil {
		slog.Info("KVM probe failed, using TCG (slower)", "err", err, "took", time.Since(start).Round(100*time.Millisecond))
		return "tcg"
	}
	slog.Info("KVM probe booted, using KVM", "took", time.Since(start).Round(100*time.Millisecond))
	return "kvm"
}
