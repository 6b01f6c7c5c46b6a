package networkd

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// node writes files under a temporary root and returns Options reading it,
// with networkctl answering version and networkd running as pid 4242.
func node(t *testing.T, version string, files map[string]string) Options {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Options{
		Root:    root,
		Version: func() (string, error) { return version, nil },
		Procs: func() ([]Process, error) {
			return []Process{{1, "systemd"}, {4242, "systemd-network"}}, nil
		},
	}
}

const v252 = "systemd 252 (252.36-1~deb12u1)\n+PAM +AUDIT +SELINUX\n"

func TestDefaults(t *testing.T) {
	r := Inspect(node(t, v252, map[string]string{
		"etc/systemd/networkd.conf": "[Network]\n#ManageForeignRoutes=yes\n#ManageForeignRoutingPolicyRules=yes\n",
	}))
	want := Setting{Name: "ManageForeignRoutes", On: true, Offered: true, Since: 246}
	if r.Routes != want || r.Pid != 4242 || r.Version != 252 || !r.Installed || !r.Removes() || len(r.Warnings) != 0 {
		t.Fatalf("got %+v; want routes %+v, pid 4242, version 252, installed, removing, no warnings", r, want)
	}
	if r.Rules != (Setting{Name: "ManageForeignRoutingPolicyRules", On: true, Offered: true, Since: 249}) {
		t.Errorf("rules %+v; want on by default", r.Rules)
	}
}

// Drop-ins apply after the main file in file name order whatever their
// directory, and /etc's hides /usr/lib's of the same name.
func TestDropInsInOrder(t *testing.T) {
	r := Inspect(node(t, v252, map[string]string{
		"etc/systemd/networkd.conf":                 "[Network]\nManageForeignRoutes=no\n",
		"usr/lib/systemd/networkd.conf.d/50-a.conf": "[Network]\nManageForeignRoutes=yes\nManageForeignRoutingPolicyRules=no\n",
		"etc/systemd/networkd.conf.d/50-a.conf":     "# the admin's copy\n[Network]\nManageForeignRoutingPolicyRules=off\n",
		"run/systemd/networkd.conf.d/60-b.conf":     "[DHCPv4]\nManageForeignRoutes=yes\n[Network]\n ManageForeignRoutes = no \n",
		"usr/lib/systemd/networkd.conf.d/70-c.txt":  "[Network]\nManageForeignRoutes=yes\n", // not .conf
		"etc/systemd/networkd.conf.d/80-reset.conf": "[Network]\nManageForeignRoutingPolicyRules=\n",
	}))
	if r.Routes.On || r.Routes.Where != "/run/systemd/networkd.conf.d/60-b.conf:4" {
		t.Errorf("routes %+v; want off, from 60-b.conf:4", r.Routes)
	}
	if !r.Rules.On || r.Rules.Where != "" {
		t.Errorf("rules %+v; want the default (on), reset by 80-reset.conf", r.Rules)
	}
	if !r.Removes() {
		t.Error("rules are on: networkd removes foreign rules")
	}
}

func TestBothOffKeepsForeign(t *testing.T) {
	r := Inspect(node(t, v252, map[string]string{DropInPath[1:]: DropIn}))
	if r.Removes() || r.Routes.On || r.Rules.On || r.Routes.Where != DropInPath+":2" || r.Rules.Where != DropInPath+":3" {
		t.Fatalf("with the drop-in: %+v; want both off, from %s", r, DropInPath)
	}
}

func TestBadBooleanNamed(t *testing.T) {
	r := Inspect(node(t, v252, map[string]string{
		"etc/systemd/networkd.conf": "[Network]\nManageForeignRoutes=no\nManageForeignRoutes=sometimes\n",
	}))
	want := []string{"/etc/systemd/networkd.conf:3: ManageForeignRoutes=sometimes is not a boolean (yes/no): networkd ignores the line"}
	if !slices.Equal(r.Warnings, want) || r.Routes.On {
		t.Fatalf("warnings %q, routes %+v; want %q and the earlier no kept", r.Warnings, r.Routes, want)
	}
}

// Before 249 there is no rules setting (networkd keeps foreign rules), and
// before 246 neither.
func TestVersions(t *testing.T) {
	for _, tc := range []struct {
		version       string
		routes, rules bool
		want          int
	}{
		{"systemd 245 (245.4-4ubuntu3)", false, false, 245},
		{"systemd 247 (247.3-7)", true, false, 247},
		{"systemd 249", true, true, 249},
		{"not systemd", true, true, 0},
	} {
		r := Inspect(node(t, tc.version, nil))
		if r.Version != tc.want || r.Routes.Offered != tc.routes || r.Rules.Offered != tc.rules {
			t.Errorf("%q: version %d, routes offered %v, rules %v; want %d, %v, %v",
				tc.version, r.Version, r.Routes.Offered, r.Rules.Offered, tc.want, tc.routes, tc.rules)
		}
	}
	r := Inspect(node(t, "systemd 245", nil))
	if r.Removes() {
		t.Error("systemd 245 offers neither setting: it does not remove foreign objects")
	}
}

func TestNotInstalled(t *testing.T) {
	o := node(t, "", nil)
	o.Version = func() (string, error) {
		return "", errors.New(`exec: "networkctl": executable file not found in $PATH`)
	}
	o.Procs = func() ([]Process, error) { return []Process{{1, "init"}}, nil }
	r := Inspect(o)
	if r.Installed || r.Pid != 0 || r.Removes() || r.VersionOf != `unknown (networkctl --version: exec: "networkctl": executable file not found in $PATH)` {
		t.Fatalf("got %+v; want not installed, not removing, the version's error", r)
	}
}

// This machine's own /proc: the pid of a running networkd, if any, is one
// whose comm says so.
func TestProcesses(t *testing.T) {
	procs, err := processes("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	if !slices.ContainsFunc(procs, func(p Process) bool { return p.Pid == self && p.Comm != "" }) {
		t.Fatalf("this process (%d) is not among %d listed", self, len(procs))
	}
}

// FuzzConfig: any networkd.conf reads without a panic, and each warning
// names the file and line it is about.
func FuzzConfig(f *testing.F) {
	f.Add("[Network]\nManageForeignRoutes=no\n")
	f.Add("[Network]\nManageForeignRoutes=\nManageForeignRoutingPolicyRules=maybe\n")
	f.Add("[Network\n=\n[]\nManageForeignRoutes")
	f.Fuzz(func(t *testing.T, conf string) {
		r := Inspect(node(t, v252, map[string]string{"etc/systemd/networkd.conf": conf}))
		for _, w := range r.Warnings {
			if len(w) < len("/etc/systemd/networkd.conf:1: ") || w[:len("/etc/systemd/networkd.conf:")] != "/etc/systemd/networkd.conf:" {
				t.Errorf("warning %q does not name the file and line", w)
			}
		}
		if r.Routes.Where == "" && !r.Routes.On {
			t.Errorf("routes off with no file named: %+v", r.Routes)
		}
	})
}
