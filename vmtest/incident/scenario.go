package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	networkdconf "github.com/routetrace/routetrace/networkd"
)

// The link systemd-networkd manages, configured by the image's
// /etc/systemd/network/10-nd0.{netdev,network}, and the CNI-named veth it
// does not manage.
const (
	managedLink   = "nd0"
	unmanagedLink = "cali1a2b3c"
	networkdConf  = "/etc/systemd/networkd.conf"
	networkdCgrp  = "/sys/fs/cgroup/system.slice/systemd-networkd.service"
)

// scenario is one way of making networkd act, with or without its foreign
// route and rule management.
type scenario struct {
	name    string
	foreign bool     // ManageForeignRoutes / ManageForeignRoutingPolicyRules at their default, yes
	action  []string // the command that makes networkd act
	enforce string   // the enforce mode routetrace runs in (enforce.go); "": it only traces
}

var restartNetworkd = []string{"systemctl", "restart", "systemd-networkd"}

var scenarios = []scenario{
	{"restart", true, restartNetworkd, ""},
	{"reload", true, []string{"networkctl", "reload"}, ""},
	{"reconfigure", true, []string{"networkctl", "reconfigure", managedLink}, ""},
	{"restart-noforeign", false, restartNetworkd, ""},
	{"reload-noforeign", false, []string{"networkctl", "reload"}, ""},
	{"reconfigure-noforeign", false, []string{"networkctl", "reconfigure", managedLink}, ""},
	{"enforce-audit", true, restartNetworkd, modeAudit},
	{"enforce-block", true, restartNetworkd, modeBlock},
	{"enforce-repair", true, restartNetworkd, modeRepair},
	// routetrace run by its systemd unit (service.go)
	{serviceScenario, true, restartNetworkd, ""},
}

func allScenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func scenarioByName(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// cniState is what a node running Calico (the veth name, /32 pod routes,
// the blackhole for its IPAM block with proto bird) and the AWS VPC CNI
// (per-pod tables and "from <pod IP> lookup <table>" rules) would have,
// spread over the managed and the unmanaged link, plus an address on the
// managed link that networkd did not configure and routes that use it as
// their source, which the kernel flushes when networkd removes it.
var cniState = [][]string{
	{"netns", "add", "pod1"},
	{"link", "add", unmanagedLink, "type", "veth", "peer", "name", "eth0", "netns", "pod1"},
	{"link", "set", unmanagedLink, "up"},
	{"-n", "pod1", "link", "set", "eth0", "up"},
	{"-n", "pod1", "addr", "add", "10.244.0.5/32", "dev", "eth0"},
	// the unmanaged CNI link
	{"route", "add", "10.244.0.5/32", "dev", unmanagedLink, "scope", "link", "proto", "static"},
	{"route", "add", "10.244.0.5/32", "dev", unmanagedLink, "table", "101", "proto", "static"},
	{"route", "add", "blackhole", "10.244.0.0/26", "proto", "bird"},
	{"-6", "route", "add", "fd00:244::5/128", "dev", unmanagedLink, "proto", "static"},
	{"-6", "route", "add", "blackhole", "fd00:244::/64", "proto", "bird"},
	// the networkd-managed link
	{"addr", "add", "198.18.0.1/24", "dev", managedLink},
	{"-6", "addr", "add", "2001:db8:ff::1/64", "dev", managedLink, "nodad"},
	{"route", "add", "10.244.1.0/24", "via", "198.18.0.254", "dev", managedLink, "src", "198.18.0.1", "proto", "bird"},
	{"route", "add", "10.244.2.0/24", "dev", managedLink, "proto", "static"},
	{"route", "add", "10.244.2.0/24", "dev", managedLink, "table", "100", "proto", "static"},
	{"route", "add", "10.244.3.0/24", "via", "192.0.2.254", "dev", managedLink, "table", "100", "proto", "bird"},
	{"-6", "route", "add", "2001:db8:244::/64", "dev", managedLink, "proto", "static"},
	// rules, by pod address and by link
	{"rule", "add", "to", "10.244.0.5", "lookup", "main", "pref", "512"},
	{"rule", "add", "from", "10.244.0.5", "lookup", "101", "pref", "1536"},
	{"rule", "add", "from", "10.244.2.7", "lookup", "100", "pref", "1536"},
	{"rule", "add", "iif", managedLink, "lookup", "100", "pref", "1600"},
	{"rule", "add", "iif", unmanagedLink, "lookup", "101", "pref", "1601"},
	{"-6", "rule", "add", "from", "fd00:244::5", "lookup", "101", "pref", "1536"},
}

// cniTeardown removes whatever cniState and an earlier scenario left;
// failures are expected (networkd may already have removed it).
var cniTeardown = [][]string{
	{"link", "del", unmanagedLink},
	{"netns", "del", "pod1"},
	{"route", "flush", "table", "100"},
	{"route", "flush", "table", "101"},
	{"-6", "route", "flush", "table", "101"},
	{"route", "del", "blackhole", "10.244.0.0/26"},
	{"-6", "route", "del", "blackhole", "fd00:244::/64"},
	{"route", "del", "10.244.2.0/24", "dev", managedLink},
	{"-6", "route", "del", "2001:db8:244::/64", "dev", managedLink},
	{"addr", "del", "198.18.0.1/24", "dev", managedLink},
	{"-6", "addr", "del", "2001:db8:ff::1/64", "dev", managedLink},
	{"rule", "del", "pref", "512"},
	{"rule", "del", "pref", "1536"},
	{"rule", "del", "pref", "1536"},
	{"rule", "del", "pref", "1600"},
	{"rule", "del", "pref", "1601"},
	{"-6", "rule", "del", "pref", "1536"},
}

type guest struct {
	routetrace string
	work       string
	netns      uint64
	conf       string          // the drop-in networkd last read ("": none)
	confSet    bool            // conf is known: reset wrote it
	whyShown   map[string]bool // kinds of removal whose why answer is in the log
	outlivedOn string          // the tier enforce-block checked the pinned enforcement on
}

func (g *guest) prepare() error {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return fmt.Errorf("reading network namespace: %w", err)
	}
	g.netns = st.Ino
	// No full `routetrace probe` here: vmtest's run of the same kernel
	// records it (the README's kernel table), each trace below logs the
	// tiers it attached, and under TCG a probe costs 10-30 s a guest.
	out, _ := exec.Command("networkctl", "--version").CombinedOutput()
	logBlock("networkctl --version", firstLine(string(out)))
	return g.settle(time.Time{}, 120*time.Second)
}

// run makes one scenario on one tier and checks routetrace's report.
func (g *guest) run(tier string, sc scenario) *verdict {
	if sc.name == serviceScenario {
		return g.runService(tier, sc)
	}
	v := &verdict{}
	var phase phases
	phase.mark("")
	dir, ok := g.prepareScenario(v, tier, sc)
	if !ok {
		return v
	}
	var pol *enforcePolicyFile
	if sc.enforce != "" {
		var err error
		if pol, err = writePolicy(dir, sc.enforce); err != nil {
			v.failf("%v", err)
			return v
		}
		// Block mode's enforcement outlives routetrace: whatever happens
		// here, the next variant must find none.
		defer g.release(dir, "release-cleanup")
	}

	phase.mark("reset and install")
	tr, err := startTracer(g.routetrace, tier, dir, tracerCommand(sc, pol))
	if err != nil {
		v.failf("starting routetrace --attach %s: %v", tier, err)
		return v
	}
	phase.mark("routetrace start")
	before, err := takeSnapshot()
	if err != nil {
		tr.stop()
		v.failf("snapshot before: %v", err)
		return v
	}
	start := time.Now()
	out, err := exec.Command(sc.action[0], sc.action[1:]...).CombinedOutput()
	if err != nil {
		tr.stop()
		v.failf("%s: %v: %s", strings.Join(sc.action, " "), err, out)
		return v
	}
	if err := g.settle(start, 90*time.Second); err != nil {
		v.notes = append(v.notes, fmt.Sprintf("networkd did not settle: %v", err))
	}
	phase.mark("action and settle")
	after, err := takeSnapshot()
	if err != nil {
		tr.stop()
		v.failf("snapshot after: %v", err)
		return v
	}
	nd, err := networkdIdentity()
	if err != nil {
		tr.stop()
		v.failf("%v", err)
		return v
	}
	if sc.enforce == modeBlock {
		networkdHealth(v, "refused", start)
	}
	// Events are read from the ring buffer in batches: give the last ones
	// time to reach the output before stopping.
	time.Sleep(time.Second)
	if err := tr.stop(); err != nil {
		v.failf("stopping routetrace: %v", err)
	}
	phase.mark("routetrace stop")
	evs, err := readEvents(tr.out)
	if err != nil {
		v.failf("%v", err)
		return v
	}
	for _, ev := range evs {
		if ev.Attach != "" && ev.Attach != tier {
			v.failf("event seen by tier %s, routetrace was forced to %s: %s", ev.Attach, tier, ev.line)
			break
		}
	}
	check(v, withoutBlocked(evs), before, after, nd, g.netns)
	tallyVerdicts(v, evs)
	switch {
	case sc.enforce != "":
		checkEnforce(v, sc.enforce, pol, evs, before, after, nd, g.netns)
	case sc.name == "restart":
		if v.removed == 0 {
			v.failf("a restart with default settings removed nothing: the incident was not reproduced")
		}
		checkTargets(v, evs, before, g.netns)
	}
	phase.mark("check")
	// The same run from its journal, after the fact.
	checkHistory(v, g.routetrace, dir, tr.state, tr.out)
	if sc.enforce != "" {
		checkHistoryVerdict(v, g.routetrace, dir, tr.state, evs,
			map[string]string{modeAudit: verdictWouldBlock, modeBlock: verdictBlocked, modeRepair: verdictRepaired}[sc.enforce])
	}
	whyText := ""
	tgt := whyTarget(evs, before, after, nd, g.netns)
	switch {
	case sc.enforce != "":
		// why is the tracing variants' check; here the journal's
		// verdicts are, above.
	case tgt != nil:
		whyText = g.checkWhyRun(v, dir, tr.state, tgt, evs, nd)
	case v.reported > 0:
		v.notes = append(v.notes, "networkd removed no route (only rules): routetrace why not asked")
	}
	phase.mark("history and why")
	// The kernel's enforcement is the same whichever tier routetrace
	// traces with: its survival and release cost two networkd restarts,
	// so they are checked once per boot, on the first tier that gets here.
	switch {
	case sc.enforce != modeBlock:
	case g.outlivedOn == "":
		g.checkBlockOutlives(v, tier, dir, sc, pol, after, &phase)
		g.outlivedOn = tier
	default:
		v.notes = append(v.notes, "enforcement after SIGKILL and --release: checked on tier "+g.outlivedOn)
	}

	logBlock(fmt.Sprintf("%s %s: networkd pid %d cgroup %d; %d events; %s", tier, sc.name, nd.pid, nd.cgroup, len(evs), phase), "")
	for _, k := range sortedKeys(before.objects()) {
		if _, ok := after.objects()[k]; !ok {
			fmt.Printf("INCIDENT-LOG   removed: %s %s\n", k, before.objects()[k])
		}
	}
	v.log()
	// The evidence, pass or fail: every removal routetrace reported and
	// every verdict it gave.
	for _, ev := range evs {
		if ev.Op == "delete" || ev.Op == "flush" || ev.Verdict != "" {
			fmt.Printf("INCIDENT-LOG   event: %s\n", ev.line)
		}
	}
	if whyText != "" {
		arg, _ := whyArg(tgt)
		logBlock(fmt.Sprintf("%s %s: routetrace why %s (what an SRE sees)", tier, sc.name, arg), whyText)
	}
	return v
}

// prepareScenario gives the scenario a fresh directory under the work
// directory, resets networkd to the scenario's settings, installs the CNI
// state and checks probe's verdict on it; ok is false when the scenario
// cannot go on (v says why).
func (g *guest) prepareScenario(v *verdict, tier string, sc scenario) (dir string, ok bool) {
	dir = filepath.Join(g.work, tier+"-"+sc.name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		v.failf("creating %s: %v", dir, err)
		return "", false
	}
	if err := g.reset(sc); err != nil {
		v.failf("resetting: %v", err)
		return "", false
	}
	for _, args := range cniState {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			v.failf("installing CNI state: ip %s: %v: %s", strings.Join(args, " "), err, out)
			return "", false
		}
	}
	g.checkProbe(v, sc)
	return dir, true
}

// tracerCommand is routetrace's subcommand for the scenario, with its
// policy: trace alone, trace --policy for audit (the documented way to
// audit), enforce for block and repair.
func tracerCommand(sc scenario, pol *enforcePolicyFile) []string {
	switch sc.enforce {
	case "":
		return []string{"trace"}
	case modeAudit:
		return []string{"trace", "--policy", pol.path}
	}
	return []string{"enforce", "--policy", pol.path, "--mode", sc.enforce}
}

// checkBlockOutlives: block mode's enforcement stays in the kernel when
// routetrace dies. A new enforce run adopts it and is killed with SIGKILL;
// networkd restarts again and must still be refused, with no routetrace
// running to report it, so the proof is the protected state, unchanged.
// Then `routetrace enforce --release` removes the enforcement and a third
// restart removes what networkd targets. after is the state the first
// restart left.
func (g *guest) checkBlockOutlives(v *verdict, tier, dir string, sc scenario, pol *enforcePolicyFile, after *snapshot, phase *phases) {
	killDir := filepath.Join(dir, "killed")
	if err := os.MkdirAll(killDir, 0o755); err != nil {
		v.failf("creating %s: %v", killDir, err)
		return
	}
	tr, err := startTracer(g.routetrace, tier, killDir, tracerCommand(sc, pol))
	if err != nil {
		v.failf("starting routetrace enforce again (adopting the pinned enforcement): %v", err)
		return
	}
	if err := tr.kill(); err != nil {
		v.failf("%v", err)
		return
	}
	phase.mark("enforce start and SIGKILL")
	start := time.Now()
	if err := g.restartNetworkd(); err != nil {
		v.failf("second restart, routetrace killed: %v", err)
		return
	}
	afterKill, err := takeSnapshot()
	if err != nil {
		v.failf("snapshot after the second restart: %v", err)
		return
	}
	protectedSame(v, "second restart, routetrace killed with SIGKILL (enforcement pinned)", after, afterKill)
	networkdHealth(v, "refused again, routetrace killed", start)
	phase.mark("second restart")

	if out, err := runTool(g.routetrace, dir, "release", "enforce", "--release"); err != nil {
		v.failf("%v", err)
		return
	} else {
		v.notes = append(v.notes, "enforce --release: "+oneLine(string(out)))
	}
	if err := g.restartNetworkd(); err != nil {
		v.failf("third restart, enforcement released: %v", err)
		return
	}
	released, err := takeSnapshot()
	if err != nil {
		v.failf("snapshot after the third restart: %v", err)
		return
	}
	_, targets, err := protectedTargets(afterKill)
	if err != nil {
		v.failf("reading the snapshot after the second restart: %v", err)
		return
	}
	for _, k := range sortedKeys(targets) {
		if _, ok := released.objects()[k]; ok {
			v.failf("third restart, enforcement released: networkd's target %s survived (is the enforcement still in the kernel?)", k)
		}
	}
	if len(targets) == 0 {
		v.failf("third restart: nothing protected left for networkd to remove, the release was not put to the test")
	}
	phase.mark("release and third restart")
}

// restartNetworkd restarts networkd outside any traced window and waits
// for it to settle.
func (g *guest) restartNetworkd() error {
	start := time.Now()
	if out, err := exec.Command(restartNetworkd[0], restartNetworkd[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(restartNetworkd, " "), err, out)
	}
	return g.settle(start, 90*time.Second)
}

// release removes pinned enforcement, if any. As cleanup it may find
// none; that is not an error here, and its output is in dir.
func (g *guest) release(dir, name string) {
	runTool(g.routetrace, dir, name, "enforce", "--release")
}

// networkdHealth: networkd refused still runs and configures its own link.
// Its log since the restart goes into the notes: what it says of the
// EPERMs.
func networkdHealth(v *verdict, what string, since time.Time) {
	out, _ := exec.Command("systemctl", "is-active", "systemd-networkd").Output()
	if s := strings.TrimSpace(string(out)); s != "active" {
		v.failf("%s: systemctl is-active systemd-networkd says %q, want active", what, s)
	}
	if st := linkState(); st != "configured" {
		v.failf("%s: networkd's own link %s is %q, want configured", what, managedLink, st)
	}
	log, err := exec.Command("journalctl", "-u", "systemd-networkd", "--since", fmt.Sprintf("@%d", since.Unix()), "-o", "cat", "--no-pager").CombinedOutput()
	if err != nil {
		v.notes = append(v.notes, fmt.Sprintf("journalctl -u systemd-networkd: %v", err))
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) > 60 {
		lines = append(lines[:60], fmt.Sprintf("(%d more lines)", len(lines)-60))
	}
	for _, l := range lines {
		v.notes = append(v.notes, fmt.Sprintf("networkd (%s): %s", what, l))
	}
}

// linkState is networkd's setup state of its link: configured, failed,
// configuring...
func linkState() string {
	out, _ := exec.Command("networkctl", "list", "--no-legend", "--no-pager", managedLink).Output()
	if f := strings.Fields(string(out)); len(f) >= 5 {
		return f[4]
	}
	return strings.TrimSpace(string(out))
}

// checkWhyRun asks `routetrace why` about tgt, a route networkd removed,
// from this run's journal and checks the JSON answer against trace's
// events. It returns the text answer for the serial log the first time a
// boot sees each kind of removal (by request, by the kernel on networkd's
// behalf): one of each is what a reader needs, and every variant's is in
// its directory as why.txt.
func (g *guest) checkWhyRun(v *verdict, dir, stateDir string, tgt *rtEvent, evs []*rtEvent, nd networkd) string {
	arg, err := whyArg(tgt)
	if err != nil {
		v.failf("route to ask why about: %v in %s", err, tgt.line)
		return ""
	}
	out, err := runTool(g.routetrace, dir, "why.json", "why", arg, "--state-dir", stateDir, "--output", "json")
	if err != nil {
		v.failf("%v", err)
		return ""
	}
	checkWhy(v, out, arg, tgt, evs, nd, g.netns)
	txt, err := runTool(g.routetrace, dir, "why.txt", "why", arg, "--state-dir", stateDir)
	if err != nil {
		v.failf("%v", err)
		return ""
	}
	kind := "request"
	if tgt.Origin == "kernel" {
		kind = "kernel"
	}
	if g.whyShown[kind] {
		return ""
	}
	if g.whyShown == nil {
		g.whyShown = map[string]bool{}
	}
	g.whyShown[kind] = true
	return string(txt)
}

// reset brings the node back to networkd's own configuration, with the
// scenario's settings: the defaults, or the drop-in `routetrace probe`
// prints as the fix (so the noforeign variants prove that advice). The
// restart it needs is not traced.
func (g *guest) reset(sc scenario) error {
	conf := "" // no drop-in
	if !sc.foreign {
		conf = networkdconf.DropIn
	}
	for _, args := range cniTeardown {
		exec.Command("ip", args...).Run()
	}
	// networkd reads networkd.conf only when it starts. Restarting it costs
	// ten seconds under TCG, so only a changed configuration does; the
	// previous scenario's action left it running and settled otherwise.
	if conf != g.conf || !g.confSet {
		if err := os.WriteFile(networkdConf, []byte("[Network]\n"), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", networkdConf, err)
		}
		if err := writeDropIn(conf); err != nil {
			return err
		}
		if out, err := exec.Command("systemctl", "restart", "systemd-networkd").CombinedOutput(); err != nil {
			return fmt.Errorf("restarting networkd: %v: %s", err, out)
		}
		g.conf, g.confSet = conf, true
	}
	return g.settle(time.Now(), 90*time.Second)
}

// writeDropIn installs networkd's drop-in with conf, or removes it ("").
func writeDropIn(conf string) error {
	if conf == "" {
		if err := os.Remove(networkdconf.DropInPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", networkdconf.DropInPath, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(networkdconf.DropInPath), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(networkdconf.DropInPath), err)
	}
	if err := os.WriteFile(networkdconf.DropInPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", networkdconf.DropInPath, err)
	}
	return nil
}

// checkProbe: with the CNI's state installed, `routetrace probe --only
// networkd` must say whether the scenario's networkd removes it, as the
// scenario then shows, and name the CNI's link.
func (g *guest) checkProbe(v *verdict, sc scenario) {
	out, err := exec.Command(g.routetrace, "probe", "--only", "networkd").CombinedOutput()
	var want []string
	if sc.foreign {
		want = []string{
			"  ManageForeignRoutes               yes (the default)",
			"  ManageForeignRoutingPolicyRules   yes (the default)",
			"  AFFECTED: a restart of systemd-networkd (an upgrade restarts it) removes the routes and rules",
			"  the CNI installed for " + unmanagedLink + " (calico)",
			"  fix: write " + networkdconf.DropInPath + ":",
		}
	} else {
		want = []string{
			"  ManageForeignRoutes               no (" + networkdconf.DropInPath + ":2)",
			"  ManageForeignRoutingPolicyRules   no (" + networkdconf.DropInPath + ":3)",
			"  foreign routes and rules are kept: a restart does not remove the CNI's",
		}
	}
	lines := strings.Split(string(out), "\n")
	for _, w := range want {
		if err != nil || !slices.Contains(lines, w) {
			v.failf("routetrace probe --only networkd (err %v) has no line %q:\n%s", err, w, out)
			return
		}
	}
}

// settle waits until networkd reports the managed link configured and
// routes, rules and addresses have not changed for two seconds.
func (g *guest) settle(since time.Time, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st := linkState()
		if st == "configured" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not configured after %s: networkctl says %q", managedLink, limit, st)
		}
		time.Sleep(300 * time.Millisecond)
	}
	var last string
	stable := 0
	for {
		s, err := takeSnapshot()
		if err != nil {
			return err
		}
		cur := strings.Join(sortedKeys(s.objects()), "\n") + strings.Join(sortedKeys(s.addrs), "\n")
		if cur == last && time.Since(since) > 3*time.Second {
			stable++
			if stable >= 2 {
				return nil
			}
		} else {
			stable = 0
		}
		last = cur
		if time.Now().After(deadline) {
			return fmt.Errorf("routes still changing after %s", limit)
		}
		time.Sleep(time.Second)
	}
}

// networkdIdentity is what a removal by networkd must carry: the unit's
// MainPID and the inode of its cgroup v2 directory, which is the cgroup id
// BPF's bpf_get_current_cgroup_id returns.
func networkdIdentity() (networkd, error) {
	out, err := exec.Command("systemctl", "show", "-p", "MainPID", "--value", "systemd-networkd").Output()
	if err != nil {
		return networkd{}, fmt.Errorf("reading networkd's MainPID: %w", err)
	}
	pid, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	if err != nil || pid == 0 {
		return networkd{}, fmt.Errorf("networkd's MainPID is %q", strings.TrimSpace(string(out)))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(networkdCgrp, &st); err != nil {
		return networkd{}, fmt.Errorf("reading networkd's cgroup: %w", err)
	}
	nd := networkd{pid: uint32(pid), cgroup: st.Ino}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return networkd{}, fmt.Errorf("reading networkd's command line: %w", err)
	}
	nd.cmdline = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if nd.exe, err = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil {
		return networkd{}, fmt.Errorf("reading networkd's executable: %w", err)
	}
	return nd, nil
}

// phases times the steps of a run, to see where TCG spends it.
type phases struct {
	last  time.Time
	steps []string
}

func (p *phases) mark(name string) {
	now := time.Now()
	if !p.last.IsZero() {
		p.steps = append(p.steps, fmt.Sprintf("%s %.1fs", name, now.Sub(p.last).Seconds()))
	}
	p.last = now
}

func (p phases) String() string { return strings.Join(p.steps, ", ") }

type tracer struct {
	cmd  *exec.Cmd
	wait <-chan error
	out  string
	err  string
	// state is the run's own --state-dir: its journal holds this run's
	// changes alone, for history and why to be checked against out.
	state string
}

// startTracer runs routetrace's command (trace, or enforce with its
// policy) with its output in dir and waits for its ready file: only then
// are the probes attached (and the enforcement in force).
func startTracer(bin, tier, dir string, command []string) (*tracer, error) {
	t := &tracer{out: filepath.Join(dir, "events.json"), err: filepath.Join(dir, "routetrace.stderr"), state: filepath.Join(dir, "state")}
	ready := filepath.Join(dir, "ready")
	stdout, err := os.Create(t.out)
	if err != nil {
		return nil, err
	}
	stderr, err := os.Create(t.err)
	if err != nil {
		return nil, err
	}
	args := append(slices.Clone(command), "--output", "json", "--attach", tier, "--ready-file", ready, "--state-dir", t.state)
	t.cmd = exec.Command(bin, args...)
	t.cmd.Stdout, t.cmd.Stderr = stdout, stderr
	if err := t.cmd.Start(); err != nil {
		return nil, err
	}
	stdout.Close()
	stderr.Close()
	exited := make(chan error, 1)
	go func() { exited <- t.cmd.Wait() }()
	deadline := time.After(180 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			t.wait = exited // Wait is already running
			return t, nil
		}
		select {
		case err := <-exited:
			msg, _ := os.ReadFile(t.err)
			return nil, fmt.Errorf("exited before ready (%v): %s", err, lastLines(string(msg), 5))
		case <-deadline:
			t.cmd.Process.Kill()
			<-exited
			msg, _ := os.ReadFile(t.err)
			return nil, fmt.Errorf("not ready after 180s: %s", lastLines(string(msg), 5))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *tracer) stop() error {
	if err := t.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-t.wait:
		msg, _ := os.ReadFile(t.err)
		logBlock("routetrace summary", lastLines(string(msg), 8))
		if err != nil {
			return fmt.Errorf("routetrace: %v: %s", err, lastLines(string(msg), 5))
		}
		return nil
	case <-time.After(60 * time.Second):
		t.cmd.Process.Kill()
		<-t.wait
		return errors.New("routetrace did not exit within 60s of SIGINT")
	}
}

// kill ends routetrace as a crash would: SIGKILL, no cleanup.
func (t *tracer) kill() error {
	if err := t.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing routetrace: %w", err)
	}
	<-t.wait
	return nil
}

func logBlock(title, body string) {
	fmt.Printf("INCIDENT-LOG %s\n", title)
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if l != "" {
			fmt.Printf("INCIDENT-LOG   %s\n", l)
		}
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
