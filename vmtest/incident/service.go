package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/routetrace/routetrace/deploy/systemd"
)

// The service variant: routetrace as the shipped unit runs it
// (deploy/systemd/routetrace.service, hardened, Type=notify), on a node
// without Kubernetes. Installed and started as its install comment says,
// then networkd restarts, and the removals must be found afterwards the
// way an SRE would: `routetrace history` on the journal the service keeps
// in /var/lib/routetrace. The same checks as the restart variant judge
// what history prints, so the unit's sandbox (capabilities, ProtectSystem,
// the system call filter) must let routetrace see and name everything.
const (
	serviceScenario = "service"
	serviceState    = "/var/lib/routetrace"
)

func (g *guest) runService(tier string, sc scenario) *verdict {
	v := &verdict{}
	var phase phases
	phase.mark("")
	dir, ok := g.prepareScenario(v, tier, sc)
	if !ok {
		return v
	}
	// The journal holds this run alone.
	if err := os.RemoveAll(serviceState); err != nil {
		v.failf("clearing %s: %v", serviceState, err)
		return v
	}
	defer uninstallService()
	if err := installService(tier); err != nil {
		v.failf("%v", err)
		return v
	}
	checkUnitVerifies(v)
	phase.mark("reset and install")

	// Type=notify: start returns once routetrace said READY=1.
	if out, err := systemctl("start", systemd.UnitName); err != nil {
		v.failf("systemctl start %s: %v: %s\n%s", systemd.UnitName, err, out, unitLog())
		return v
	}
	phase.mark("routetrace start")
	props := unitProps("ActiveState", "SubState", "StatusText")
	if props["ActiveState"] != "active" || props["SubState"] != "running" || !strings.HasPrefix(props["StatusText"], "tracing: ") {
		v.failf("after systemctl start: %v, want active, running and a StatusText \"tracing: ...\" (READY=1 sent)\n%s", props, unitLog())
	}
	logBlock("systemctl status: "+props["StatusText"], "")
	logBlock("systemd-analyze security "+systemd.UnitName, securitySummary())

	before, err := takeSnapshot()
	if err != nil {
		v.failf("snapshot before: %v", err)
		return v
	}
	start := time.Now()
	if out, err := exec.Command(sc.action[0], sc.action[1:]...).CombinedOutput(); err != nil {
		v.failf("%s: %v: %s", strings.Join(sc.action, " "), err, out)
		return v
	}
	if err := g.settle(start, 90*time.Second); err != nil {
		v.notes = append(v.notes, fmt.Sprintf("networkd did not settle: %v", err))
	}
	phase.mark("action and settle")
	after, err := takeSnapshot()
	if err != nil {
		v.failf("snapshot after: %v", err)
		return v
	}
	nd, err := networkdIdentity()
	if err != nil {
		v.failf("%v", err)
		return v
	}
	// Events are read from the ring buffer in batches: the last ones
	// reach the journal within a second.
	time.Sleep(time.Second)

	// What an SRE runs while the service goes on: the journal's default
	// place, no flags.
	if _, err := runTool(g.routetrace, dir, "history.json", "history", "--output", "json"); err != nil {
		v.failf("%v", err)
		return v
	}
	evs, err := readEvents(filepath.Join(dir, "history.json"))
	if err != nil {
		v.failf("%v", err)
		return v
	}
	for _, ev := range evs {
		if ev.Attach != "" && ev.Attach != tier {
			v.failf("event seen by tier %s, ROUTETRACE_ARGS forced %s: %s", ev.Attach, tier, ev.line)
			break
		}
	}
	check(v, evs, before, after, nd, g.netns)
	if v.removed == 0 {
		v.failf("a restart with default settings removed nothing: the incident was not reproduced")
	}
	checkTargets(v, evs, before, g.netns)
	phase.mark("history and check")

	if out, err := systemctl("stop", systemd.UnitName); err != nil {
		v.failf("systemctl stop %s: %v: %s", systemd.UnitName, err, out)
	}
	// A clean stop: exit status 0, no loss (3), no signal.
	if p := unitProps("Result", "ExecMainStatus"); p["Result"] != "success" || p["ExecMainStatus"] != "0" {
		v.failf("after systemctl stop: %v, want Result=success ExecMainStatus=0\n%s", p, unitLog())
	}
	phase.mark("routetrace stop")
	logBlock(fmt.Sprintf("%s %s: networkd pid %d cgroup %d; %d events in history; %s", tier, sc.name, nd.pid, nd.cgroup, len(evs), phase), "")
	logBlock("journalctl -u "+systemd.UnitName+" (last lines)", unitLog())
	v.log()
	return v
}

// installService does what the unit's install comment says, with the
// attach tier forced through the unit's EnvironmentFile.
func installService(tier string) error {
	if err := os.WriteFile(systemd.UnitPath, []byte(systemd.Unit), 0o644); err != nil {
		return fmt.Errorf("installing the unit: %w", err)
	}
	if err := os.WriteFile(systemd.DefaultsPath, []byte("ROUTETRACE_ARGS=\"--attach "+tier+"\"\n"), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", systemd.DefaultsPath, err)
	}
	if out, err := systemctl("daemon-reload"); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %v: %s", err, out)
	}
	return nil
}

func uninstallService() {
	systemctl("stop", systemd.UnitName)
	for _, p := range []string{systemd.UnitPath, systemd.DefaultsPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Printf("INCIDENT-LOG   note: removing %s: %v\n", p, err)
		}
	}
	systemctl("daemon-reload")
	systemctl("reset-failed", systemd.UnitName)
}

// checkUnitVerifies: systemd's own lint has nothing to say about the unit
// (an unknown directive, a missing binary, a bad dependency).
func checkUnitVerifies(v *verdict) {
	out, err := exec.Command("systemd-analyze", "verify", systemd.UnitPath).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		v.failf("systemd-analyze verify %s (err %v): %s", systemd.UnitPath, err, out)
	}
}

// securitySummary is systemd's exposure score for the unit: its last line.
func securitySummary() string {
	out, _ := exec.Command("systemd-analyze", "security", "--no-pager", systemd.UnitName).CombinedOutput()
	return lastLines(string(out), 1)
}

func systemctl(args ...string) ([]byte, error) {
	return exec.Command("systemctl", args...).CombinedOutput()
}

// unitProps reads properties of the unit from systemctl show.
func unitProps(names ...string) map[string]string {
	out, _ := exec.Command("systemctl", "show", "--property", strings.Join(names, ","), systemd.UnitName).Output()
	props := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, val, ok := strings.Cut(l, "="); ok {
			props[k] = val
		}
	}
	return props
}

func unitLog() string {
	out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-n", "12", "-u", systemd.UnitName).CombinedOutput()
	return string(out)
}
