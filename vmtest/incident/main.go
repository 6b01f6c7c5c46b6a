// Command routetrace-incident is the guest half of vmtest's systemd-networkd
// incident scenario (go run ./vmtest --scenario networkd). It runs inside a
// Debian bookworm VM booted with systemd, as a oneshot unit, and for every
// attach tier and every variant:
//
//  1. resets the network and restarts systemd-networkd with the variant's
//     networkd.conf;
//  2. installs CNI-like state: a Calico-named veth to a pod namespace, pod
//     routes (proto static and bird, a /32, a blackhole, a second table) on
//     the networkd-managed link nd0 and on the unmanaged one, AWS VPC CNI
//     style rules, and an address networkd did not configure;
//  3. starts `routetrace trace --output json --attach <tier>`, snapshots
//     routes, rules and addresses, makes networkd act (restart, reload or
//     reconfigure), waits for it to settle, snapshots again, stops routetrace;
//  4. checks from routetrace's JSON alone that every route and rule that
//     disappeared is reported deleted exactly once, by networkd (its comm,
//     MainPID and cgroup) or by the kernel on networkd's behalf, and that
//     nothing that survived is reported deleted; then, from the journal the
//     run wrote into its own --state-dir, that `routetrace history --output
//     json` prints trace's event lines byte for byte, and that `routetrace
//     why` about the most specific route networkd removed (a pod route when
//     there is one) names that route deleted, networkd as responsible (unit,
//     comm, MainPID, exact command line; as the cause of a kernel removal),
//     networkd's burst with the counts trace's events give, and the
//     networkd.conf settings (ManageForeignRoutes=no,
//     ManageForeignRoutingPolicyRules=no) for what it removed. One why
//     answer per kind of removal is printed as text to the log.
//
// The enforce variants (enforce.go) make the same restart with routetrace
// judging every change by a policy that protects the CNI state: audit
// (would-block, nothing refused), block (networkd refused, the state kept,
// the enforcement outliving a SIGKILLed routetrace until --release) and
// repair (the state put back, identical).
//
// Results go to stdout, which the unit sends to the serial console, as
// INCIDENT-RESULT lines the host parses.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		tiers     = flag.String("tiers", "fentry,kprobe,tracepoint", "comma-separated attach tiers to run each variant with")
		scenarios = flag.String("scenarios", strings.Join(allScenarioNames(), ","), "comma-separated variants")
		everyTier = flag.String("every-tier", "restart", "comma-separated variants run under every tier; the others run once, under tracepoint (or the last of --tiers): how the tracer attaches is what differs between tiers, and restart is the incident itself, while the judging, reloads and the noforeign settings do not depend on it")
		rt        = flag.String("routetrace", "/usr/local/bin/routetrace", "routetrace binary")
		work      = flag.String("workdir", "/var/tmp/incident", "directory for routetrace output and snapshots")
		poweroff  = flag.Bool("poweroff", false, "power the machine off when done (the VM's unit sets it)")
	)
	flag.Parse()
	start := time.Now()
	uptime, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("INCIDENT-START uptime=%s\n", strings.Fields(string(uptime) + " ?")[0])
	if err := os.MkdirAll(*work, 0o755); err != nil {
		fmt.Printf("INCIDENT-ERROR creating %s: %v\n", *work, err)
		exit(1, *poweroff)
	}
	env := &guest{routetrace: *rt, work: *work}
	if err := env.prepare(); err != nil {
		fmt.Printf("INCIDENT-ERROR preparing: %v\n", err)
		exit(1, *poweroff)
	}
	tierList := splitList(*tiers)
	once := onceTier(tierList)
	every := splitList(*everyTier)
	for _, tier := range tierList {
		for _, name := range splitList(*scenarios) {
			sc, ok := scenarioByName(name)
			if !ok {
				fmt.Printf("INCIDENT-ERROR unknown scenario %q\n", name)
				exit(1, *poweroff)
			}
			if tier != once && !slices.Contains(every, name) {
				fmt.Printf("INCIDENT-RESULT tier=%s scenario=%s status=once once_tier=%s reason=runs once per kernel, under %s\n",
					tier, name, once, once)
				continue
			}
			t0 := time.Now()
			v := env.run(tier, sc)
			status := "pass"
			switch {
			case v.skip != "":
				status = "skip"
			case len(v.failures) > 0:
				status = "fail"
			}
			med, worst := v.missing()
			fmt.Printf("INCIDENT-RESULT tier=%s scenario=%s status=%s removed=%d reported=%d kernel=%d "+
				"blocked=%d would_block=%d repaired=%d missing_med_us=%d missing_max_us=%d took=%.1fs reason=%s\n",
				tier, sc.name, status, v.removed, v.reported, v.kernel,
				v.blocked, v.wouldBlock, v.repaired, med, worst, time.Since(t0).Seconds(), oneLine(v.reason()))
		}
	}
	fmt.Printf("INCIDENT-DONE took=%.1fs\n", time.Since(start).Seconds())
	exit(0, *poweroff)
}

// exit powers the VM off directly rather than through systemd, whose
// SuccessAction= did not end the guest here: a forced power-off is what
// busybox's poweroff -f does in the plain vmtest guests. The root disk is a
// QEMU snapshot, so nothing needs unmounting.
func exit(code int, poweroff bool) {
	os.Stdout.Sync()
	if poweroff {
		time.Sleep(time.Second) // let the serial port drain
		syscall.Sync()
		if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			fmt.Printf("INCIDENT-ERROR powering off: %v\n", err)
		}
	}
	os.Exit(code)
}

// onceTier is where the variants that run once per kernel run: tracepoint
// where it is among the tiers (its tracer starts fastest), else the last.
func onceTier(tiers []string) string {
	if slices.Contains(tiers, "tracepoint") || len(tiers) == 0 {
		return "tracepoint"
	}
	return tiers[len(tiers)-1]
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
