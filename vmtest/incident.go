package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The systemd-networkd incident (issue 3): a Debian bookworm root
// filesystem booted with systemd as PID 1, systemd-networkd managing one
// link, CNI-like routes and rules around it; the guest program
// (vmtest/incident) makes networkd act and checks routetrace's report. One
// boot per kernel runs every tier and variant, because booting systemd
// under TCG takes minutes.

//go:embed incident-init.sh
var incidentInit []byte

// consoleMu serializes the kernels' console lines on stdout.
var consoleMu sync.Mutex

const incidentUnit = `[Unit]
Description=routetrace systemd-networkd incident scenario
Wants=systemd-networkd.service
After=systemd-networkd.service multi-user.target

[Service]
Type=oneshot
EnvironmentFile=/etc/routetrace-incident.env
ExecStart=/usr/local/bin/routetrace-incident --poweroff $INCIDENT_ARGS
# Straight to the serial console, not through journald: the program powers
# the VM off when done and its last lines must already be out.
StandardOutput=tty
StandardError=tty
TTYPath=/dev/%s
TimeoutStartSec=infinity
FailureAction=poweroff-force

[Install]
WantedBy=multi-user.target
`

// networkdFiles turn the debootstrap tree into the scenario's machine:
// networkd enabled with one dummy link nd0 under its default settings plus
// two addresses and a route of its own, the scenario unit, and nothing on
// the console or the timers that could compete with it.
func networkdFiles(a *arch) []rootfsFile {
	files := []rootfsFile{
		{path: "/etc/hostname", data: "incident\n", mode: 0o644},
		{path: "/etc/hosts", data: "127.0.0.1 localhost incident\n::1 localhost\n", mode: 0o644},
		{path: "/etc/systemd/network/10-nd0.netdev", data: "[NetDev]\nName=nd0\nKind=dummy\n", mode: 0o644},
		{path: "/etc/systemd/network/10-nd0.network", mode: 0o644, data: "[Match]\nName=nd0\n\n[Network]\n" +
			"Address=192.0.2.1/24\nAddress=2001:db8:1::1/64\n\n[Route]\nDestination=198.51.100.0/24\nGateway=192.0.2.254\n"},
		{path: "/etc/systemd/system/routetrace-incident.service", data: fmt.Sprintf(incidentUnit, a.console), mode: 0o644},
		{path: "/etc/systemd/system/multi-user.target.wants/routetrace-incident.service", target: "/etc/systemd/system/routetrace-incident.service"},
		{path: "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service", target: "/lib/systemd/system/systemd-networkd.service"},
		{path: "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket", target: "/lib/systemd/system/systemd-networkd.socket"},
	}
	for _, u := range []string{
		"getty.target", "serial-getty@" + a.console + ".service", "systemd-firstboot.service", "e2scrub_reap.service",
		"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
		"fstrim.timer", "systemd-tmpfiles-clean.timer", "systemd-networkd-wait-online.service",
	} {
		files = append(files, rootfsFile{path: "/etc/systemd/system/" + u, target: "/dev/null"})
	}
	return sortedFiles(files)
}

// incidentResult is one INCIDENT-RESULT line.
type incidentResult struct {
	tier, scenario, status string
	fields                 map[string]string
}

type incidentKernel struct {
	label    string
	entry    kernelEntry
	k        *kernel
	results  []incidentResult
	booted   time.Duration // until the scenario program started
	done     bool
	errLines []string
	err      error
	total    time.Duration
	logPath  string
	// variantsOn: this kernel ran restart alone; the variants ran on
	// that kernel (--variants-kernel).
	variantsOn string
}

// runIncident boots the scenario on one architecture's kernels and
// returns their results; the caller runs every architecture at once and
// writes one summary (writeIncidentReports).
func (h *harness) runIncident(ctx context.Context, o *options, entries []kernelEntry) ([]*incidentKernel, error) {
	a := h.arch
	for _, p := range []struct{ flag, path string }{{"--routetrace", forArch(o.routetrace, a)}, {"--incident-binary", forArch(o.incidentBin, a)}} {
		if p.path == "" || !fileExists(p.path) {
			return nil, fmt.Errorf("%s %q: build it with CGO_ENABLED=0 GOARCH=%s go build (see make incident)", p.flag, p.path, a.name)
		}
	}
	tiers := h.tiers // "auto" is every tier (run)
	var err error
	if h.runDir, err = os.MkdirTemp(h.cache.path("runs"), time.Now().Format("20060102-150405-")); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	img, err := h.networkdImage(ctx, entries[0])
	if err != nil {
		return nil, err
	}
	if h.accel == "" {
		// The probe needs a kernel; the first one will do.
		pkg, err := resolveKernel(entries[0], h.cache)
		if err != nil {
			return nil, err
		}
		k, err := fetchKernel(pkg, a, h.cache)
		if err != nil {
			return nil, err
		}
		h.accel = h.chooseAccel(ctx, vm{arch: a, qemu: h.qemu, cpus: o.cpus, memory: o.memory,
			kernel: k.image, cmdline: kernelCmdline(a, "")})
	}
	var labels []string
	for _, e := range entries {
		labels = append(labels, e.label())
	}
	slog.Info("incident run started", "kernels", labels, "tiers", tiers, "accel", h.accel, "image", img, "logs", h.runDir)

	results := make([]*incidentKernel, len(entries))
	forEachKernel(ctx, h.slots(), labels, o.parallel, func(i int) {
		// Only the tiers the kernel offers (kernels.txt).
		kt := strings.Join(kernelTiers(tiers, entries[i]), ",")
		args := "--tiers=" + kt
		if o.scenarios != "" {
			args += " --scenarios=" + o.scenarios
		}
		variantsElsewhere := o.variantsKernel != "" && entries[i].series != o.variantsKernel
		if variantsElsewhere {
			// The incident itself on every kernel and tier; its
			// variants (reloads, noforeign, enforcement) test
			// routetrace and networkd, not the kernel's hooks, and
			// each costs a networkd restart under TCG.
			args = "--tiers=" + kt + " --scenarios=restart"
		}
		results[i] = h.incidentKernel(ctx, entries[i], img, args)
		if variantsElsewhere {
			results[i].variantsOn = o.variantsKernel
		}
	})
	// A kernel left without a result was never booted (interrupted while
	// waiting for a guest slot): it shows as an error row.
	for i, r := range results {
		if r == nil {
			results[i] = &incidentKernel{label: entries[i].label(), err: errors.New("not run: interrupted before it could boot")}
		}
	}

	return results, nil
}

// writeIncidentReports prints the summary of every architecture's kernels
// and writes --summary-json and --summary-md once, with all of them.
func writeIncidentReports(o *options, results []*incidentKernel, tiers []string, start time.Time, runDirs []string) (bool, error) {
	ok := writeIncidentSummary(os.Stdout, results, tiers)
	fmt.Printf("\ntotal %s; console logs: %s\n", time.Since(start).Round(time.Second), strings.Join(runDirs, " "))
	if o.summaryJSON != "" {
		if err := writeJSONFile(o.summaryJSON, incidentReport(results)); err != nil {
			return ok, err
		}
	}
	if o.summaryMD != "" {
		f, err := os.Create(o.summaryMD)
		if err != nil {
			return ok, fmt.Errorf("writing markdown summary: %w", err)
		}
		writeIncidentMarkdown(f, results, tiers)
		if err := f.Close(); err != nil {
			return ok, fmt.Errorf("writing markdown summary: %w", err)
		}
	}
	return ok, nil
}

func (h *harness) incidentKernel(ctx context.Context, e kernelEntry, img, guestArgs string) *incidentKernel {
	start := time.Now()
	r := &incidentKernel{label: e.label(), entry: e}
	defer func() { r.total = time.Since(start) }()
	pkg, err := resolveKernel(e, h.cache)
	if err != nil {
		r.err = err
		return r
	}
	if r.k, err = fetchKernel(pkg, h.arch, h.cache); err != nil {
		r.err = err
		return r
	}
	k := r.k
	initrd := filepath.Join(h.runDir, k.release+".initrd")
	if err := incidentInitramfs(k, h.arch, h.user, h.cache, h.opts, guestArgs, initrd); err != nil {
		r.err = err
		return r
	}
	defer os.Remove(initrd)

	v := vm{
		arch: h.arch, qemu: h.qemu, accel: h.accel, cpus: h.opts.cpus, memory: h.opts.memory,
		kernel: k.image, initrd: initrd,
		cmdline: kernelCmdline(h.arch, "systemd.show_status=error "+h.opts.kernelArgs),
		// snapshot=on: writes go to a temporary overlay, the cached image
		// stays as built and two kernels can boot it at once.
		extra: []string{"-drive", "file=" + img + ",format=raw,if=virtio,snapshot=on"},
	}
	r.logPath = filepath.Join(h.runDir, k.release+".log")
	logFile, err := os.Create(r.logPath)
	if err != nil {
		r.err = fmt.Errorf("creating console log: %w", err)
		return r
	}
	defer logFile.Close()
	prefix := "[" + k.version + "] "
	slog.Info("booting", "kernel", k.version, "accel", v.accel, "timeout", h.opts.timeout, "log", r.logPath)
	bootCtx, cancel := context.WithTimeoutCause(ctx, h.opts.timeout, fmt.Errorf("timed out after %s", h.opts.timeout))
	defer cancel()
	err = v.run(bootCtx, func(line string) {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		fmt.Fprintln(logFile, line)
		// Whole lines under a lock: two kernels print at once. --quiet
		// keeps the results and errors.
		if !h.opts.quiet || strings.Contains(line, "INCIDENT-RESULT") || strings.Contains(line, "INCIDENT-ERROR") {
			fmt.Fprintln(os.Stdout, prefix+line)
		}
		i := strings.Index(line, "INCIDENT-")
		if i < 0 {
			return
		}
		marker := line[i:]
		switch {
		case strings.HasPrefix(marker, "INCIDENT-START"):
			r.booted = time.Since(start)
		case strings.HasPrefix(marker, "INCIDENT-RESULT "):
			f := markerFields(marker)
			r.results = append(r.results, incidentResult{tier: f["tier"], scenario: f["scenario"], status: f["status"], fields: f})
		case strings.HasPrefix(marker, "INCIDENT-ERROR"):
			r.errLines = append(r.errLines, marker)
		case strings.HasPrefix(marker, "INCIDENT-DONE"):
			r.done = true
		}
	})
	switch {
	case err != nil:
		r.err = fmt.Errorf("guest did not finish: %w (log: %s)", err, r.logPath)
	case len(r.errLines) > 0:
		r.err = fmt.Errorf("%s (log: %s)", r.errLines[0], r.logPath)
	case !r.done:
		r.err = fmt.Errorf("guest stopped before the scenario finished (log: %s)", r.logPath)
	}
	slog.Info("kernel finished", "kernel", k.version, "guest_ok", r.err == nil, "booted_in", r.booted.Round(time.Second), "took", time.Since(start).Round(time.Second))
	return r
}

// incidentInitramfs is busybox, the modules, the init that mounts the
// root disk, and the files it copies into the root: routetrace, the
// scenario program and its arguments.
func incidentInitramfs(k *kernel, a *arch, u *userland, c *cache, o *options, guestArgs, dst string) error {
	im := image{}
	im.chardev("dev/console", 5, 1)
	for _, d := range []string{"proc", "sys", "dev", "newroot", "bin", "sbin", "usr/bin", "usr/sbin"} {
		im.dir(d)
	}
	if err := addELF(im, "bin/busybox", u.busybox, a, u.root); err != nil {
		return err
	}
	im.symlink("bin/sh", "busybox")
	im.data("init", incidentInit, 0o755)
	if err := addModules(im, k, c, "incident", []string{"virtio_pci", "virtio_blk", "ext4", "veth", "dummy"}); err != nil {
		return err
	}
	files := []struct{ src, dst string }{
		{forArch(o.routetrace, a), "/usr/local/bin/routetrace"},
		{forArch(o.incidentBin, a), "/usr/local/bin/routetrace-incident"},
	}
	var list strings.Builder
	for i, f := range files {
		p := fmt.Sprintf("incident/files.d/%d", i)
		if err := addELF(im, p, f.src, a, u.root); err != nil {
			return err
		}
		fmt.Fprintf(&list, "/%s %s 755\n", p, f.dst)
	}
	im.data("incident/files.d/env", []byte("INCIDENT_ARGS="+guestArgs+"\n"), 0o644)
	fmt.Fprintf(&list, "/incident/files.d/env /etc/routetrace-incident.env 644\n")
	im.data("incident/files", []byte(list.String()), 0o644)
	return im.writeFile(dst)
}

// writeIncidentSummary prints kernel x tier rows and a column per
// scenario, and returns whether everything passed.
func writeIncidentSummary(w io.Writer, results []*incidentKernel, tiers []string) bool {
	scen := incidentScenarios(results)
	ok := true
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "KERNEL\tTIER\t%s\n", strings.Join(upper(scen), "\t"))
	for _, row := range incidentRows(results, tiers, scen) {
		for _, c := range row[2:] {
			ok = ok && (strings.HasPrefix(c, "pass") || strings.HasPrefix(c, "once") || strings.HasPrefix(c, "variants") || c == notOffered)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	for _, r := range results {
		if r.err != nil {
			ok = false
			fmt.Fprintf(w, "%s: %v\n", r.label, r.err)
		}
		fmt.Fprintf(w, "%s: systemd scenario started %s after QEMU, kernel done in %s\n", r.label, r.booted.Round(time.Second), r.total.Round(time.Second))
		for _, res := range r.results {
			if res.status != "pass" && res.status != "once" {
				fmt.Fprintf(w, "  %s %s %s: %s\n", r.label, res.tier, res.scenario, res.fields["reason"])
			}
		}
	}
	if len(scen) == 0 {
		ok = false
	}
	return ok
}

func writeIncidentMarkdown(w io.Writer, results []*incidentKernel, tiers []string) {
	scen := incidentScenarios(results)
	fmt.Fprintf(w, "| Kernel | tier | %s |\n|---|---|%s\n", strings.Join(scen, " | "), strings.Repeat("---|", len(scen)))
	for _, row := range incidentRows(results, tiers, scen) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// incidentRows is one row per kernel and tier: kernel, tier, then a cell
// per scenario.
func incidentRows(results []*incidentKernel, tiers, scen []string) [][]string {
	var rows [][]string
	arches := map[string]bool{}
	for _, r := range results {
		arches[r.entry.arch] = true
	}
	for _, r := range results {
		name := r.label
		if r.k != nil {
			name = r.k.version
		}
		if len(arches) > 1 { // 6.1 amd64 and 6.1 arm64
			name += " " + r.entry.arch
		}
		for _, t := range tiers {
			row := []string{name, t}
			for _, s := range scen {
				if !r.entry.offers(t) {
					row = append(row, notOffered)
					continue
				}
				row = append(row, incidentCell(r, t, s))
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// incidentCell: "pass 9/9 (3 kernel)" = 9 routes and rules removed, 9
// reported, 3 of them as the kernel's on networkd's behalf; the enforce
// variants add their verdicts, "12 blocked, 1 would-block", and for
// repairs how long the state was missing, "12 repaired (missing 310/940
// µs)" (median/worst); then how long the variant took.
func incidentCell(r *incidentKernel, tier, scen string) string {
	for _, res := range r.results {
		if res.tier != tier || res.scenario != scen {
			continue
		}
		if res.status == "once" {
			// Ran under another tier of the same boot (the guest's
			// --every-tier): the cell says where.
			return "once: see " + res.fields["once_tier"]
		}
		s := fmt.Sprintf("%s %s/%s", res.status, res.fields["reported"], res.fields["removed"])
		if n, _ := strconv.Atoi(res.fields["kernel"]); n > 0 {
			s += fmt.Sprintf(" (%d kernel)", n)
		}
		var verdicts []string
		for _, v := range []struct{ field, name string }{{"blocked", "blocked"}, {"would_block", "would-block"}, {"repaired", "repaired"}} {
			if n, _ := strconv.Atoi(res.fields[v.field]); n > 0 {
				verdicts = append(verdicts, fmt.Sprintf("%d %s", n, v.name))
			}
		}
		if n, _ := strconv.Atoi(res.fields["repaired"]); n > 0 {
			verdicts[len(verdicts)-1] += fmt.Sprintf(" (missing %s/%s µs)", res.fields["missing_med_us"], res.fields["missing_max_us"])
		}
		if len(verdicts) > 0 {
			s += "; " + strings.Join(verdicts, ", ")
		}
		if t := res.fields["took"]; t != "" {
			s += " " + t
		}
		return s
	}
	if r.err != nil {
		return "error"
	}
	if r.variantsOn != "" && scen != "restart" && r.done {
		return "variants: see " + r.variantsOn
	}
	return "-"
}

func incidentScenarios(results []*incidentKernel) []string {
	seen := map[string]int{}
	for _, r := range results {
		for i, res := range r.results {
			if _, ok := seen[res.scenario]; !ok {
				seen[res.scenario] = i
			}
		}
	}
	names := make([]string, 0, len(seen))
	for s := range seen {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool { return seen[names[i]] < seen[names[j]] })
	return names
}

// addModules puts the named modules and their dependencies into
// dir/modules.d of an early initramfs, and their load order, one path a
// line, into dir/modules, which its init script insmods in turn.
func addModules(im image, k *kernel, c *cache, dir string, names []string) error {
	mods, err := resolveModules(k, c, names)
	if err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range mods {
		p := dir + "/modules.d/" + m.name + ".ko"
		im.file(p, m.path, 0o644)
		fmt.Fprintf(&order, "/%s\n", p)
	}
	im.data(dir+"/modules", []byte(order.String()), 0o644)
	return nil
}
