package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/networkd"
)

func TestNetworkdReport(t *testing.T) {
	on := func(name string, since int, where string) networkd.Setting {
		return networkd.Setting{Name: name, On: true, Offered: true, Since: since, Where: where}
	}
	affected := &networkd.Report{Installed: true, Pid: 1099, Version: 252, VersionOf: "networkctl --version",
		Routes: on("ManageForeignRoutes", 246, ""), Rules: on("ManageForeignRoutingPolicyRules", 249, "/etc/systemd/networkd.conf:4"),
		Warnings: []string{"/etc/systemd/networkd.conf:3: ManageForeignRoutes=sometimes is not a boolean (yes/no): networkd ignores the line"}}
	kept := &networkd.Report{Installed: true, Pid: 1099, Version: 252,
		Routes: networkd.Setting{Name: "ManageForeignRoutes", Offered: true, Since: 246, Where: networkd.DropInPath + ":2"},
		Rules:  networkd.Setting{Name: "ManageForeignRoutingPolicyRules", Offered: true, Since: 249, Where: networkd.DropInPath + ":3"}}
	old := &networkd.Report{Installed: true, Version: 245, VersionOf: "networkctl --version",
		Routes: networkd.Setting{Name: "ManageForeignRoutes", On: true, Since: 246},
		Rules:  networkd.Setting{Name: "ManageForeignRoutingPolicyRules", On: true, Since: 249}}
	fix := `  fix: write /etc/systemd/networkd.conf.d/90-routetrace-keep-foreign.conf:
    [Network]
    ManageForeignRoutes=no
    ManageForeignRoutingPolicyRules=no
  then restart systemd-networkd at a quiet moment: it reads the file when it starts, and that
  start already keeps foreign routes and rules (` + "`routetrace trace`" + ` shows any it still removes)
`
	const head = "\nsystemd-networkd (removes foreign routes and rules when it starts?):\n"
	for _, tc := range []struct {
		name     string
		r        *networkd.Report
		links    []string
		linksErr error
		want     string
	}{
		{"affected", affected, []string{"cali1a2b3c (calico)", "flannel.1 (flannel)"}, nil, head +
			"  state                             running (pid 1099), systemd 252\n" +
			"  ManageForeignRoutes               yes (the default)\n" +
			"  ManageForeignRoutingPolicyRules   yes (/etc/systemd/networkd.conf:4)\n" +
			"  warning: /etc/systemd/networkd.conf:3: ManageForeignRoutes=sometimes is not a boolean (yes/no): networkd ignores the line\n" +
			"  AFFECTED: a restart of systemd-networkd (an upgrade restarts it) removes the routes and rules\n" +
			"  the CNI installed for cali1a2b3c (calico), flannel.1 (flannel)\n" + fix},
		{"no CNI links", affected, nil, nil, ""},
		{"links unreadable", affected, nil, errors.New("listing links: permission denied"), ""},
		{"kept", kept, []string{"cali1a2b3c (calico)"}, nil, head +
			"  state                             running (pid 1099), systemd 252\n" +
			"  ManageForeignRoutes               no (/etc/systemd/networkd.conf.d/90-routetrace-keep-foreign.conf:2)\n" +
			"  ManageForeignRoutingPolicyRules   no (/etc/systemd/networkd.conf.d/90-routetrace-keep-foreign.conf:3)\n" +
			"  foreign routes and rules are kept: a restart does not remove the CNI's\n"},
		{"old", old, []string{"cali1a2b3c (calico)"}, nil, head +
			"  state                             installed, not running (a start applies the settings below), systemd 245\n" +
			"  ManageForeignRoutes               not in systemd 245 (the setting, and the removal it governs, came with 246)\n" +
			"  ManageForeignRoutingPolicyRules   not in systemd 245 (the setting, and the removal it governs, came with 249)\n" +
			"  foreign routes and rules are kept: a restart does not remove the CNI's\n"},
		{"not installed", &networkd.Report{}, nil, nil, head + "  not installed: nothing to do\n"},
	} {
		var b strings.Builder
		printNetworkdReport(&b, tc.r, tc.links, tc.linksErr)
		got := b.String()
		switch tc.name {
		case "no CNI links":
			if !strings.Contains(got, "  no CNI links here yet: once a CNI plugin installs routes, a restart of networkd removes them\n"+fix) {
				t.Errorf("%s:\n%s", tc.name, got)
			}
		case "links unreadable":
			if !strings.Contains(got, "  CNI links         unknown (listing links: permission denied)\n"+fix) {
				t.Errorf("%s:\n%s", tc.name, got)
			}
		default:
			if got != tc.want {
				t.Errorf("%s: got\n%s\nwant\n%s", tc.name, got, tc.want)
			}
		}
	}
}

// probe --only networkd prints that check alone, on this machine, with no
// BPF loaded; a section it does not know is a usage error.
func TestProbeOnlyNetworkd(t *testing.T) {
	r := run(t, runTimeout, "probe", "--only", "networkd")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "\nsystemd-networkd (removes foreign routes and rules when it starts?):\n  ") {
		t.Fatalf("exit status %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "HOOK") {
		t.Errorf("the kernel's table was printed too:\n%s", r.stdout)
	}
	r = run(t, runTimeout, "probe", "--only", "kernel")
	if r.code != 2 || !strings.Contains(r.stderr, `--only "kernel": the one section printed alone is networkd`) {
		t.Errorf("--only kernel: exit status %d, stderr %q; want 2 and the sections known", r.code, r.stderr)
	}
}
