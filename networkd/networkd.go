// Package networkd tells whether systemd-networkd on this node removes the
// routes and routing policy rules it did not configure, the CNI's among
// them, when it starts: the incident routetrace was built for. Since
// systemd 246 ManageForeignRoutes= defaults to yes, and since 249
// ManageForeignRoutingPolicyRules= does too; an unattended upgrade that
// restarts networkd then flushes every pod route of the node.
//
// Inspect reads networkd.conf and its drop-ins the way networkd does (the
// main file, then the drop-ins of every directory in file name order, a
// name in /etc hiding the same name in /run and /usr/lib), the version from
// networkctl, and whether a systemd-networkd process runs.
package networkd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The systemd versions that made each setting default to yes.
const (
	RoutesSince = 246
	RulesSince  = 249
)

// DropIn is the file Fix names, and its content: both settings off.
const (
	DropInPath = "/etc/systemd/networkd.conf.d/90-routetrace-keep-foreign.conf"
	DropIn     = "[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n"
)

// Setting is one of the two settings as networkd would read it.
type Setting struct {
	Name  string
	On    bool
	Where string // "file:line", or "" for networkd's default
	// Offered is false where networkd's version predates the setting,
	// which came with the removal of foreign objects of its kind (Since).
	Offered bool
	Since   int
}

// Report is what Inspect found.
type Report struct {
	Installed bool   // a networkd.conf or the networkd binary exists
	Pid       int    // a running systemd-networkd, 0 if none
	Version   int    // systemd's version from networkctl, 0 if unknown
	VersionOf string // what it came from, or why it is unknown
	Routes    Setting
	Rules     Setting
	// Warnings are lines networkd itself would ignore (a bad boolean, an
	// unreadable file), each naming file:line.
	Warnings []string
}

// Options say where to look; the zero value is this node.
type Options struct {
	Root    string                    // prefix of every path ("" = /)
	Version func() (string, error)    // networkctl --version's output
	Procs   func() ([]Process, error) // the running processes
}

// Process is a running process's pid and kernel name (comm).
type Process struct {
	Pid  int
	Comm string
}

var configDirs = []string{"etc/systemd", "run/systemd", "usr/local/lib/systemd", "usr/lib/systemd"}

// Inspect reads the node's networkd configuration and state.
func Inspect(o Options) *Report {
	if o.Version == nil {
		o.Version = networkctlVersion
	}
	root := rootOf(o.Root)
	if o.Procs == nil {
		o.Procs = func() ([]Process, error) { return processes(filepath.Join(root, "proc")) }
	}
	r := &Report{
		Routes: Setting{Name: "ManageForeignRoutes", On: true, Since: RoutesSince},
		Rules:  Setting{Name: "ManageForeignRoutingPolicyRules", On: true, Since: RulesSince},
	}
	for _, bin := range []string{"lib/systemd/systemd-networkd", "usr/lib/systemd/systemd-networkd"} {
		if _, err := os.Stat(filepath.Join(root, bin)); err == nil {
			r.Installed = true
		}
	}
	if procs, err := o.Procs(); err == nil {
		for _, p := range procs {
			// The kernel's comm holds 15 characters: systemd-network.
			if p.Comm == "systemd-network" {
				r.Pid = p.Pid
				r.Installed = true
				break
			}
		}
	}
	if out, err := o.Version(); err != nil {
		r.VersionOf = fmt.Sprintf("unknown (networkctl --version: %v)", err)
	} else if v, ok := parseVersion(out); ok {
		r.Version, r.VersionOf = v, "networkctl --version"
	} else {
		r.VersionOf = fmt.Sprintf("unknown (networkctl --version said %q)", firstLine(out))
	}
	for _, f := range configFiles(root) {
		r.Installed = true
		r.read(root, f)
	}
	r.Routes.Offered = r.Version == 0 || r.Version >= RoutesSince
	r.Rules.Offered = r.Version == 0 || r.Version >= RulesSince
	return r
}

func rootOf(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// Removes reports whether a start of networkd removes foreign routes or
// rules: it runs (or is installed and may start), and one setting is on.
func (r *Report) Removes() bool {
	if !r.Installed {
		return false
	}
	return (r.Routes.Offered && r.Routes.On) || (r.Rules.Offered && r.Rules.On)
}

// configFiles lists what networkd reads, in the order it applies them:
// the first main file found, then the drop-ins by file name, each name
// taken from the first directory that has it.
func configFiles(root string) []string {
	var files []string
	for _, d := range configDirs {
		p := filepath.Join(d, "networkd.conf")
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			files = append(files, p)
			break
		}
	}
	byName := map[string]string{}
	for _, d := range configDirs {
		dir := filepath.Join(d, "networkd.conf.d")
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".conf") {
				continue
			}
			if _, ok := byName[e.Name()]; !ok {
				byName[e.Name()] = filepath.Join(dir, e.Name())
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		files = append(files, byName[n])
	}
	return files
}

// read applies one file's [Network] settings. path is relative to root
// and named absolute in the report.
func (r *Report) read(root, path string) {
	name := "/" + path
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %v", name, err))
		}
		return
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section != "Network" {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		var s *Setting
		switch key {
		case r.Routes.Name:
			s = &r.Routes
		case r.Rules.Name:
			s = &r.Rules
		default:
			continue
		}
		where := fmt.Sprintf("%s:%d", name, n)
		if value == "" { // an empty value resets to the default
			s.On, s.Where = true, ""
			continue
		}
		on, ok := parseBoolean(value)
		if !ok {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s=%s is not a boolean (yes/no): networkd ignores the line", where, key, value))
			continue
		}
		s.On, s.Where = on, where
	}
	if err := sc.Err(); err != nil {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %v: the rest of the file was not read", name, err))
	}
}

// parseBoolean is systemd's parse_boolean.
func parseBoolean(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

var versionLine = regexp.MustCompile(`^systemd (\d+)\b`)

// parseVersion reads "systemd 252 (252.36-1~deb12u1)".
func parseVersion(out string) (int, bool) {
	m := versionLine.FindStringSubmatch(firstLine(out))
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	return v, err == nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

func networkctlVersion() (string, error) {
	out, err := exec.Command("networkctl", "--version").Output()
	return string(out), err
}

// processes lists pid and comm of every process in proc.
func processes(proc string) ([]Process, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, Process{Pid: pid, Comm: strings.TrimSpace(string(comm))})
	}
	return out, nil
}
