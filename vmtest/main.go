// Command vmtest boots Debian kernels under QEMU and runs routetrace's Go
// test binaries inside each one, once per BPF attach tier, then prints a
// kernel x tier table of results. It exists because the host kernel cannot
// tell us how the tracer behaves on the kernels users run.
//
// Usage, from the repository root, as root (QEMU, apt-get download):
//
//	CGO_ENABLED=0 go test -c -o /tmp/tracer.test ./tracer
//	go run ./vmtest --test-binary /tmp/tracer.test \
//	    --tiers fentry,kprobe,tracepoint --summary-md /tmp/kernels.md
//
// Each binary runs in the guest as `X -test.v -test.count=1 <--test-args>`
// with ROUTETRACE_ATTACH=<tier> set (tier "auto" leaves it unset) and
// ROUTETRACE_VMTEST=<the tiers the kernel must give> (the kernel list's
// tiers=, all three by default; --expect-tiers narrows it): a test whose
// forced tier is refused then fails instead of skipping (internal/tiertest).
// A tier the kernel list says a kernel lacks is not run there, and the
// summary shows it as not offered. The guest is a busybox initramfs with
// iproute2's ip, bpffs, tracefs, debugfs, securityfs, cgroup2, /run/netns
// and the modules named by --modules; BPF LSM is enabled on the command
// line. Use --extra-file to add programs such as the routetrace binary.
//
// Kernels, packages, initramfs images and per-run console logs live under
// $XDG_CACHE_HOME/routetrace/vmtest (default ~/.cache/routetrace/vmtest).
// Packages come through vmtest's own apt configuration there (apt/, see
// apt.go): the Debian suites from bullseye to sid, amd64 and arm64, from the
// mirror the host's apt sources name; the host's apt state is never changed.
// Host tools needed: qemu-system-x86 (or qemu-system-arm), busybox-static,
// iproute2, xz-utils; the harness names the package when one is missing.
//
// Adding a kernel: try it alone with --kernel 6.6 (the newest
// linux-image-6.6.*-cloud-<arch>[-unsigned] package apt knows), then add a
// line "6.6 amd64 <that exact package>" to vmtest/kernels.txt, with
// tiers=... and a comment saying why if it cannot give every tier.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	kernelsFile    string
	kernel         string
	binaries       listFlag
	testArgs       string
	env            listFlag
	tiers          string
	expectTiers    string
	timeout        time.Duration
	accel          string
	icount         int
	cpus           int
	memory         int
	extraFiles     listFlag
	arch           string
	modules        string
	kernelArgs     string
	summaryMD      string
	summaryJSON    string
	guestSlots     int
	variantsKernel string
	scenario       string
	routetrace     string
	incidentBin    string
	scenarios      string
	parallel       int
	bench          bool
	benchArgs      string
	quiet          bool
	debug          bool
}

// listFlag is a repeatable flag; with split set it also accepts
// comma-separated values.
type listFlag struct {
	vals  []string
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(s string) error {
	if l.split {
		for _, v := range strings.Split(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				l.vals = append(l.vals, v)
			}
		}
		return nil
	}
	l.vals = append(l.vals, s)
	return nil
}

func parseFlags(args []string) (*options, error) {
	o := &options{binaries: listFlag{split: true}}
	fs := flag.NewFlagSet("vmtest", flag.ContinueOnError)
	fs.StringVar(&o.kernelsFile, "kernels", "vmtest/kernels.txt", "`file` listing kernels, one \"<series> <arch> <package> [tiers=...]\" per line")
	fs.StringVar(&o.kernel, "kernel", "", "run only this kernel: a series (6.1, of --arch or the host's) or package `name`; a listed one keeps its line's tiers, an unlisted series is the newest package apt knows")
	fs.Var(&o.binaries, "test-binary", "Go test binary built with CGO_ENABLED=0 go test -c (repeatable or comma-separated)")
	fs.StringVar(&o.testArgs, "test-args", "", "arguments for every test binary, shell-quoted, e.g. \"-test.run 'TestA|TestB'\"")
	fs.Var(&o.env, "env", "`K=V` exported for the tests in the guest (repeatable)")
	fs.StringVar(&o.tiers, "tiers", "auto", "comma-separated attach tiers; each binary runs once per tier with ROUTETRACE_ATTACH set (auto: unset)")
	fs.StringVar(&o.expectTiers, "expect-tiers", "", "comma-separated tiers every kernel of the run must give: a test forcing one of them fails, not skips, when it is refused (ROUTETRACE_VMTEST in the guest); \"none\" expects none (default: each kernel's tiers= in the kernel list, all three unless it says otherwise)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "per-kernel limit for boot plus all tests; QEMU is killed after it")
	fs.StringVar(&o.accel, "accel", "auto", "auto (KVM if a probe boot works, else TCG), kvm or tcg")
	fs.IntVar(&o.icount, "icount", -1, "TCG with QEMU's -icount shift=`N`: guest time counts instructions (2^N ns each) instead of following the host's clock, so timings do not depend on the host's load; one host thread runs all vCPUs (-1: off)")
	fs.IntVar(&o.cpus, "cpus", 1, "guest vCPUs (one boots most reliably under TCG)")
	fs.IntVar(&o.memory, "memory", 1024, "guest memory in MiB; the initramfs lives in it")
	fs.Var(&o.extraFiles, "extra-file", "`SRC:DST` host file to copy into the guest (repeatable)")
	fs.StringVar(&o.arch, "arch", "", "run only the listed kernels of this guest architecture, amd64 or arm64 (default: every architecture in the kernel list; an unlisted --kernel: the host's)")
	fs.StringVar(&o.modules, "modules", "veth,dummy", "comma-separated kernel modules to load in the guest, with their dependencies")
	fs.StringVar(&o.kernelArgs, "kernel-args", "", "extra kernel command line arguments")
	fs.StringVar(&o.summaryMD, "summary-md", "", "also write the summary table as Markdown to this `path`")
	fs.StringVar(&o.summaryJSON, "summary-json", "", "also write the results as JSON to this `path` (go run ./vmtest table renders them into the README)")
	fs.StringVar(&o.scenario, "scenario", "", "instead of test binaries, run a scenario: networkd (the systemd-networkd incident, see incident.go)")
	fs.StringVar(&o.routetrace, "routetrace", "", "networkd scenario and --bench: the routetrace `binary` (CGO_ENABLED=0 go build ./cmd/routetrace)")
	fs.StringVar(&o.incidentBin, "incident-binary", "", "networkd scenario: the guest program (CGO_ENABLED=0 go build ./vmtest/incident)")
	fs.StringVar(&o.variantsKernel, "variants-kernel", "", "networkd scenario: run the variants of --scenarios only on this kernel list entry (e.g. 6.12); the others run restart alone (default: every kernel runs them all)")
	fs.StringVar(&o.scenarios, "scenarios", "", "networkd scenario: comma-separated variants (default all: restart, reload, reconfigure, each also -noforeign)")
	fs.BoolVar(&o.bench, "bench", false, "instead of test binaries, run 'routetrace bench' once per tier (needs --routetrace; with --cpus 2 it adds --pin: the tracer on CPU 1, the workload on CPU 0)")
	fs.StringVar(&o.benchArgs, "bench-args", "--n 10000 --rounds 3", "--bench: further arguments for routetrace bench, shell-quoted")
	fs.IntVar(&o.parallel, "parallel", 1, "kernels booted at once by this run (each QEMU TCG guest keeps one host core busy)")
	fs.IntVar(&o.guestSlots, "guest-slots", runtime.NumCPU(), "guests running at once on this machine, across every vmtest process (lock files in the cache)")
	fs.BoolVar(&o.quiet, "quiet", false, "do not stream guest consoles; they are always in the run's log files")
	fs.BoolVar(&o.debug, "debug", false, "debug logging, including QEMU command lines")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./vmtest [flags]\n\nexample:\n"+
			"  CGO_ENABLED=0 go test -c -o /tmp/tracer.test ./tracer\n"+
			"  go run ./vmtest --test-binary /tmp/tracer.test --tiers fentry,kprobe,tracepoint\n"+
			"  go run ./vmtest --scenario networkd --routetrace bin/routetrace --incident-binary /tmp/routetrace-incident\n"+
			"  go run ./vmtest --bench --routetrace bin/routetrace --cpus 2 --tiers fentry,kprobe\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "table" {
		if err := runTable(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "vmtest table:", err)
			os.Exit(2)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	level := slog.LevelInfo
	if o.debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		slog.Error("vmtest failed", "err", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// splitArgs splits a command line the way a POSIX shell would for the
// common cases: whitespace, single quotes, double quotes and backslashes.
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg := false
	var quote rune
	escaped := false
	for _, c := range s {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '\\' && quote != '\'':
			escaped, inArg = true, true
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inArg = c, true
		case c == ' ' || c == '\t' || c == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(c)
			inArg = true
		}
	}
	if quote != 0 || escaped {
		return nil, errors.New("unterminated quote or escape")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}
