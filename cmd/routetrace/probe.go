package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/bpffeat"
	"github.com/routetrace/routetrace/tracer"
)

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:  "probe",
		Usage: "show which attach tier each kernel hook gets here, and why better ones were refused",
		Description: "Loads and attaches every hook with every tier (fentry, then kprobe), detaches again and\n" +
			"prints a table, plus BTF, bpffs/tracefs/securityfs, BPF LSM, lockdown and capability status,\n" +
			"where names come from (cgroups, CNI, pods), the enforce modes, and whether systemd-networkd\n" +
			"removes the CNI's routes and rules when it restarts (ManageForeignRoutes=), with the drop-in\n" +
			"that stops it (--only networkd prints that check alone).\n" +
			"Exit status 0 means `routetrace trace` can run here; 1 means it cannot (the table says why).\n\n" +
			"Example:\n  sudo routetrace probe",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cri-socket", Usage: "the CRI socket to check (default: the runtimes' default paths; 'none' skips it)"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "check the Kubernetes API with this kubeconfig, or 'in-cluster'"},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"NODE_NAME"}, Usage: "this node's name in Kubernetes (default: the host name)"},
			&cli.StringFlag{Name: "output", Value: "text", Usage: "text, or json: the kernel's part (hooks and their tiers, tier 3's capture, enforce modes) for programs"},
			&cli.StringFlag{Name: "only", Usage: "print only the systemd-networkd check (--only networkd): no BPF is loaded, so it takes no privileges and no time"},
		},
		Action: func(c *cli.Context) error {
			switch c.String("only") {
			case "":
			case "networkd":
				printNetworkdCheck(c.App.Writer)
				return nil
			default:
				return cli.Exit(fmt.Sprintf("routetrace: --only %q: the one section printed alone is networkd", c.String("only")), 2)
			}
			// A bad --output is refused before anything is loaded: the
			// probe itself takes seconds (a minute under emulation).
			output := c.String("output")
			if output != "text" && output != "json" {
				return cli.Exit(fmt.Sprintf("routetrace: --output %q: want text or json", output), 2)
			}
			r := tracer.Probe(slog.Default())
			if output == "json" {
				if err := writeProbeJSON(c.App.Writer, r); err != nil {
					return fmt.Errorf("writing the probe as JSON: %w", err)
				}
				if !r.CanTrace() {
					return cli.Exit("", 1)
				}
				return nil
			}
			printReport(c.App.Writer, r)
			printEnrichReport(c.App.Writer, enrich.Probe(c.Context, enrich.Options{
				CRISocket: c.String("cri-socket"), Kubeconfig: c.String("kubeconfig"),
				NodeName: c.String("node-name"), Logger: slog.Default(),
			}))
			printEnforceReport(c.App.Writer, r)
			printNetworkdCheck(c.App.Writer)
			if !r.CanTrace() {
				return cli.Exit("tracing cannot run on this host (see above)", 1)
			}
			return nil
		},
	}
}

func printReport(w io.Writer, r *tracer.Report) {
	fmt.Fprintf(w, "kernel      %s (%s)\n", r.Kernel, r.Arch)
	fmt.Fprintf(w, "BTF         %s\n", status(r.BTF, "/sys/kernel/btf/vmlinux"))
	fmt.Fprintf(w, "ring buffer %s\n", status(r.RingBuf, "supported"))
	for _, m := range r.Mounts {
		s := "mounted"
		if !m.Mounted {
			s = fmt.Sprintf("NOT mounted (mount -t %s %s %s)", m.FS, m.FS, m.Path)
		}
		fmt.Fprintf(w, "%-11s %s at %s\n", m.FS, s, m.Path)
	}
	lsm := "inactive (enforce mode needs lsm=...,bpf on the kernel command line)"
	if r.BPFLSM() {
		lsm = "active"
	}
	fmt.Fprintf(w, "BPF LSM     %s [%s]\n", lsm, r.LSMs)
	if r.Lockdown != "" {
		fmt.Fprintf(w, "lockdown    %s\n", r.Lockdown)
	}
	if len(r.MissingCaps) > 0 {
		fmt.Fprintf(w, "privileges  MISSING %s (run as root)\n", strings.Join(r.MissingCaps, ", "))
	} else if !tracer.CanEnterNetns() {
		fmt.Fprintf(w, "privileges  ok for this network namespace; other namespaces (pods) also need CAP_SYS_ADMIN: their listeners are opened from inside them (setns)\n")
	} else {
		fmt.Fprintf(w, "privileges  ok\n")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOOK\tTIER\tCARRIES\tREFUSED")
	for _, h := range r.Hooks {
		tier := hookTier(h)
		if tier == "" {
			tier = "-"
		}
		var refused []string
		for _, rf := range h.Refused {
			refused = append(refused, fmt.Sprintf("%s: %s", rf.Tier, shortErr(rf.Err)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Fn, tier, h.What, strings.Join(refused, "; "))
	}
	tw.Flush()
	fmt.Fprintf(w, "\ntier 3 (request capture + rtnetlink notifications):\n")
	fmt.Fprintf(w, "  socket capture    %s\n", status(r.SocketCapture, "available (tp_btf consume_skb, skb_copy_datagram_iovec)"))
	fmt.Fprintf(w, "  syscall capture   %s\n", status(r.Tracepoints, "available (syscall tracepoints)"))
	if errors.Is(r.Tracepoints, bpffeat.ErrNoBPFLoop) {
		fmt.Fprintf(w, "  tier 3 (tracepoint): %s\n", status(r.Tracepoints, ""))
		return
	}
	if r.SocketCapture != nil && r.Tracepoints != nil {
		fmt.Fprintln(w, "  tier 3 cannot run here")
		return
	}
	fmt.Fprintf(w, "  --capture auto uses the %s capture\n", r.Capture())
	if !tier3Needed(r.Hooks) {
		return
	}
	if r.Capture() == tracer.CaptureSyscalls {
		fmt.Fprintln(w, "  the last resort, used here because fentry and kprobes are refused: enabling any syscall\n"+
			"  tracepoint puts every syscall of every process on the kernel's slow path. Measured on a\n"+
			"  2-core 6.18 machine: dd bs=1 (a read and a write per byte) 2.05x as long, a UDP sendmsg\n"+
			"  loop 1.16x (routetrace bench --cases dd,udp measures it here). Allowing fentry (no\n"+
			"  lockdown=confidentiality, CONFIG_FUNCTION_TRACER), kprobes, or BTF tracepoints (the\n"+
			"  socket capture: kernel BTF, 5.5 and later) removes it.")
		return
	}
	if r.IoctlOrigins == nil {
		fmt.Fprintln(w, "  ioctls (net-tools route, ifconfig) are named from their notifications (tp_btf sk_data_ready);\n"+
			"  a route ioctl that fails notifies nothing: `trace --ioctl` sees it, with the ioctl syscall\n"+
			"  tracepoints, which tax every syscall on the node.")
		return
	}
	fmt.Fprintf(w, "  ioctls (net-tools route, ifconfig) are reported with an unknown actor unless `trace --ioctl`\n"+
		"  attaches the ioctl syscall tracepoints, which tax every syscall on the node; naming them from\n"+
		"  their notifications needs the sk_data_ready BTF tracepoint (6.6+): %v\n", r.IoctlOrigins)
}

// printEnrichReport says where names come from: cgroups (always, from the
// kernel), the CNI configuration, and the pod sources.
func printEnrichReport(w io.Writer, r *enrich.Report) {
	fmt.Fprintf(w, "\nenrichment (who in the user's terms):\n")
	fmt.Fprintf(w, "  cgroups           %s; this process is in %s\n", r.CgroupMode, strings.Join(r.Hierarchies, ", "))
	fmt.Fprintf(w, "  actor's cgroup    read by the kernel at the process's first change: the deepest of its cgroups\n"+
		"                    over every hierarchy (cgroup2, and v1 ones such as memory or name=systemd)\n")
	switch {
	case r.CNIErr == nil && r.CNI == "", r.CNIErr != nil && errors.Is(r.CNIErr, os.ErrNotExist):
		fmt.Fprintf(w, "  CNI config        none in /etc/cni/net.d (interfaces are still named by their CNI's naming)\n")
	case r.CNIErr != nil:
		fmt.Fprintf(w, "  CNI config        %v\n", r.CNIErr)
	default:
		fmt.Fprintf(w, "  CNI config        %s\n", r.CNI)
	}
	for _, s := range r.Sources {
		name := "CRI socket"
		if s.Name == "kubernetes" {
			name = "Kubernetes API"
		}
		if s.Err != nil {
			at := ""
			if s.Endpoint != "" {
				at = s.Endpoint + ": "
			}
			fmt.Fprintf(w, "  %-17s %s%v\n", name, at, s.Err)
			continue
		}
		fmt.Fprintf(w, "  %-17s %s\n", name, s.Detail)
	}
}

// tier3Needed reports whether some essential hook got neither fentry nor
// kprobe, so that tier 3 runs.
// printEnforceReport says which enforce modes this kernel supports, and
// why not.
func printEnforceReport(w io.Writer, r *tracer.Report) {
	fmt.Fprintf(w, "\nenforce modes (routetrace enforce --policy FILE):\n")
	fmt.Fprintf(w, "  audit             available wherever trace runs (changes are judged, none refused)\n")
	block := blockSupported()
	fmt.Fprintf(w, "  block             %s\n", status(block, "available (BPF LSM: lsm/netlink_send and lsm/file_ioctl refuse protected changes)"))
	repair := repairSupported(r)
	fmt.Fprintf(w, "  repair            %s\n", status(repair, "available (removed protected state is put back from a snapshot)"))
	auto := "block"
	if block != nil {
		auto = "repair"
	}
	fmt.Fprintf(w, "  mode auto picks   %s\n", auto)
}

// hookTier is the tier a hook got: its own, tracepoint for an essential
// hook tier 3 covers, "" for an optional one nothing covers here.
func hookTier(h tracer.HookStatus) string {
	switch {
	case h.Tier != event.AttachUnknown:
		return h.Tier.String()
	case h.Essential:
		return "tracepoint"
	}
	return ""
}

func repairSupported(r *tracer.Report) error {
	if slices.Contains(r.MissingCaps, "CAP_NET_ADMIN") {
		return errors.New("needs CAP_NET_ADMIN to put routes back (run as root)")
	}
	return nil
}

func tier3Needed(hooks []tracer.HookStatus) bool {
	for _, h := range hooks {
		if h.Essential && h.Tier == event.AttachUnknown {
			return true
		}
	}
	return false
}

func status(err error, ok string) string {
	if err == nil {
		return ok
	}
	// What the kernel lacks is not a failure to look into: say so.
	if errors.Is(err, bpffeat.ErrNoBPFLoop) {
		return "not offered: " + bpffeat.ErrNoBPFLoop.Error()
	}
	return "UNAVAILABLE: " + shortErr(err)
}

// shortErr keeps the innermost cause: the table's rows must stay readable,
// and "operation not permitted" says more than the wrapping around it.
func shortErr(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
