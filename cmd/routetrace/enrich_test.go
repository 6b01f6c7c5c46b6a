package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// deepestCgroup is the cgroup path the kernel side picks for a process in
// the same cgroups as this test: the deepest over every hierarchy, ties to
// cgroup2.
func deepestCgroup(t *testing.T) (path, hierarchy string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	best := -1
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		depth := 0
		if parts[2] != "/" {
			depth = strings.Count(parts[2], "/")
		}
		name := parts[1]
		if parts[0] == "0" {
			name = "cgroup2"
		}
		if depth > best || (depth == best && name == "cgroup2") {
			best, path, hierarchy = depth, parts[2], name
		}
	}
	return path, hierarchy
}

// Every change names its process by command line, executable and cgroup,
// read by the kernel: ip has exited long before the tracer prints.
func TestTraceJSONEnriched(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	p := startTrace(t, ns, "--output", "json")
	ip(ns, "route", "add", "198.51.100.0/24", "dev", "v0")
	del := ip(ns, "route", "del", "198.51.100.0/24", "dev", "v0")
	stdout, stderr := p.stop()

	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := filepath.EvalSymlinks(ipPath)
	if err != nil {
		t.Fatal(err)
	}
	cgroup, hierarchy := deepestCgroup(t)
	var found bool
	for _, l := range parseJSONLines(t, stdout) {
		if l["op"] != "delete" || l["dst"] != "198.51.100.0/24" {
			continue
		}
		found = true
		checkFields(t, "delete", l, fields{"actor.pid": del.pid, "actor.exe": exe, "actor.cgroup": cgroup,
			"actor.cgroup_hierarchy": hierarchy, "actor.enrich_error": nil, "victim.link": "v0", "victim.link_kind": "veth",
			"victim.pod": nil, "actor.pod": nil})
		want := []any{"ip", "-n", ns.Name, "route", "del", "198.51.100.0/24", "dev", "v0"}
		if got := l["actor.cmdline"]; !reflect.DeepEqual(got, want) {
			t.Errorf("actor.cmdline = %#v, want %#v", got, want)
		}
	}
	if !found {
		t.Fatalf("no delete of 198.51.100.0/24 in:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "enrichment: actors named from the kernel's process records") {
		t.Errorf("stderr has no enrichment line:\n%s", stderr)
	}
}

// --unit keeps the changes of one systemd unit; a process outside any unit
// matches none, and a malformed glob is refused with the flag's name.
func TestTraceUnitFilter(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	p := startTrace(t, ns, "--output", "json", "--unit", "no-such.service")
	ip(ns, "route", "add", "198.51.100.0/24", "dev", "v0")
	stdout, _ := p.stop()
	for _, l := range parseJSONLines(t, stdout) {
		if l["op"] != nil {
			t.Errorf("--unit no-such.service let a change through: %s", l)
		}
	}
	r := run(t, 10*time.Second, "trace", "--pod", "[")
	if r.code != 1 || !strings.Contains(r.stderr, `--pod "[": a malformed glob`) {
		t.Errorf("--pod '[': exit %d, stderr %q", r.code, r.stderr)
	}
}

// The tracer with 10,000 pods in its cache stays within 64 MiB of RSS.
func TestTraceMemoryWithTenThousandPods(t *testing.T) {
	tiertest.TierIndependent(t)
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	p := startTrace(t, ns, "--output", "json", "--synthetic-pods", "10000")
	for i := 0; i < 50; i++ {
		ip(ns, "route", "add", fmt.Sprintf("10.128.0.%d/32", i), "dev", "v0")
	}
	time.Sleep(200 * time.Millisecond)
	rss, ring := residentKiB(t, p.cmd.Process.Pid)
	anon := statusKiB(t, p.cmd.Process.Pid, "RssAnon:")
	stdout, stderr := p.stop()
	// The bound is on anonymous memory, what the tracer cannot give back:
	// the rest of its RSS is the ring buffer's mapping (its 16 MiB mapped
	// twice; kernel memory, charged as memlock) and the executable's pages
	// (file-backed, shared, reclaimable; how many are resident depends on
	// the page cache's fault-around: 30 MiB here, more in vmtest's ramfs).
	t.Logf("RSS with 10,000 pods: %.1f MiB: anonymous %.1f MiB, ring buffer mapping %.1f MiB, executable and other files %.1f MiB",
		float64(rss)/1024, float64(anon)/1024, float64(ring)/1024, float64(rss-ring-anon)/1024)
	if anon == 0 || anon > 64*1024 {
		t.Errorf("anonymous RSS %.1f MiB, want at most 64", float64(anon)/1024)
	}
	// The generated pods are real to the enricher: a /32 route to the first
	// one's address names it.
	var named int
	for _, l := range parseJSONLines(t, stdout) {
		if l["op"] == "add" && l["dst"] == "10.128.0.0/32" {
			checkFields(t, "add", l, fields{"victim.pod.name": "app-0-7d9f8b6c5d-x0000", "victim.pod.namespace": "team-0"})
			named++
		}
	}
	if named != 1 {
		t.Errorf("%d adds of 10.128.0.0/32 named, want 1\nstderr:\n%s", named, stderr)
	}
}

// residentKiB is a process's resident memory, and the part of it that is
// BPF maps mapped into it (the ring buffer), from its smaps.
func residentKiB(t *testing.T, pid int) (total, bpfMaps int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	inMap := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 {
			inMap = len(f) >= 6 && f[5] == "anon_inode:bpf-map"
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			n, _ := strconv.Atoi(f[1])
			total += n
			if inMap {
				bpfMaps += n
			}
		}
	}
	return total, bpfMaps
}

// statusKiB reads one kB field of /proc/PID/status.
func statusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
