package tracer

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// testCgroup makes a nested cgroup routetrace-test-<rand>.slice/rt-<rand>.service
// under this process's own cgroup in the hierarchy where the kernel's
// choice (the deepest cgroup, ties to cgroup2) will be it: cgroup2 on a
// pure v2 node (the VMs), else the v1 hierarchy this process is nested
// deepest in (two levels deeper than every other then). It returns the
// leaf's directory, the path suffix the kernel must report, and a
// function that removes both directories.
func testCgroup(t *testing.T) (dir, suffix string, remove func()) {
	t.Helper()
	const root = "/sys/fs/cgroup"
	var base string
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		base = filepath.Join(root, selfCgroup(t, func(h string) bool { return h == "" }))
	} else {
		best := -1
		for _, h := range []string{"memory", "pids", "name=systemd", "cpu", "blkio", "devices", "freezer"} {
			p := selfCgroup(t, func(c string) bool { return slices.Contains(strings.Split(c, ","), h) })
			mnt := filepath.Join(root, strings.TrimPrefix(h, "name="))
			if p == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(mnt, p, "cgroup.procs")); err != nil {
				continue
			}
			if d := strings.Count(strings.TrimSuffix(p, "/"), "/"); d > best {
				best, base = d, filepath.Join(mnt, p)
			}
		}
		if base == "" {
			t.Skip("no cgroup hierarchy to make a test cgroup in (neither cgroup2 at /sys/fs/cgroup nor a writable v1 one)")
		}
	}
	id := rand.Uint32()
	slice := fmt.Sprintf("routetrace-test-%08x.slice", id)
	leaf := fmt.Sprintf("rt-%08x.service", id)
	dir = filepath.Join(base, slice, leaf)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("making the test cgroup: %v", err)
	}
	remove = func() {
		os.Remove(dir)
		os.Remove(filepath.Dir(dir))
	}
	t.Cleanup(remove)
	return dir, "/" + slice + "/" + leaf, remove
}

// selfCgroup is this process's cgroup path in the first /proc/self/cgroup
// line whose controller list matches ("" for cgroup2's line), "" if none.
func selfCgroup(t *testing.T, match func(controllers string) bool) string {
	t.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && match(parts[1]) {
			return parts[2]
		}
	}
	return ""
}

// TestShortLivedActorNamed: a process that deletes a route from a cgroup
// of its own and exits at once, its cgroup removed right after, is still
// named by the kernel's process record: argv, executable, cgroup path.
func TestShortLivedActorNamed(t *testing.T) {
	ns := newNetns(t)
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "v0", "table", "7")
	dir, suffix, removeCgroup := testCgroup(t)
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := filepath.EvalSymlinks(ip)
	if err != nil {
		t.Fatal(err)
	}
	s := hookSession(t, ns)

	argv := []string{ip, "-n", ns.Name, "route", "del", "198.51.100.0/24", "table", "7"}
	cmd := exec.Command("sh", "-c", fmt.Sprintf("echo $$ > %s/cgroup.procs && exec %s", dir, strings.Join(argv, " ")))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	removeCgroup() // gone before the tracer reads anything of it
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("the test cgroup %s is still there", dir)
	}
	pid := uint32(cmd.Process.Pid)
	evs := in(s.stop(), ns)

	var del *event.Event
	for i := range evs {
		if evs[i].Op == event.OpDelete && evs[i].Dst.String() == "198.51.100.0/24" && evs[i].Origin != event.OriginKernel {
			if del != nil {
				t.Fatalf("the delete was reported twice")
			}
			del = &evs[i]
		}
	}
	if del == nil {
		t.Fatalf("the delete was not reported; got %d events", len(evs))
	}
	if del.Actor.Tgid != pid || del.Actor.Comm.String() != "ip" {
		t.Fatalf("delete by %s[%d], want ip[%d]", del.Actor.Comm, del.Actor.Tgid, pid)
	}
	if del.Actor.Cookie == 0 {
		t.Fatalf("the delete's actor has no process cookie")
	}
	if del.Dev.String() != "v0" {
		t.Errorf("dev %q, want v0", del.Dev.String())
	}

	s.mu.Lock()
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	var p *procSeen
	for i := range procs {
		if procs[i].p.Cookie == del.Actor.Cookie {
			if p != nil {
				t.Errorf("cookie %#x delivered twice", del.Actor.Cookie)
			}
			p = &procs[i]
		}
	}
	if p == nil {
		t.Fatalf("no process record with the delete's cookie %#x (%d records)", del.Actor.Cookie, len(procs))
	}
	t.Logf("process record: %+v", *p.p)
	// OnProcess came before the event that carries its cookie.
	s.mu.Lock()
	for _, ev := range s.events[:p.events] {
		if ev.Actor.Cookie == p.p.Cookie || ev.Cause.Actor.Cookie == p.p.Cookie {
			t.Errorf("an event with cookie %#x was emitted before its process record", p.p.Cookie)
		}
	}
	s.mu.Unlock()
	if p.p.Tgid != del.Actor.Tgid {
		t.Errorf("process tgid %d, event's %d", p.p.Tgid, del.Actor.Tgid)
	}
	if !slices.Equal(p.p.Argv, argv) {
		t.Errorf("argv %q, want %q", p.p.Argv, argv)
	}
	if p.p.Exe != exe {
		t.Errorf("exe %q, want %q", p.p.Exe, exe)
	}
	if !strings.HasSuffix(p.p.Cgroup, suffix) {
		t.Errorf("cgroup %q, want it to end with %q", p.p.Cgroup, suffix)
	}
	if p.p.Truncated != 0 {
		t.Errorf("truncated %b", p.p.Truncated)
	}
	if want := strings.Count(p.p.Cgroup, "/"); p.p.CgroupLevel != uint32(want) {
		t.Errorf("cgroup level %d, want %d for %q", p.p.CgroupLevel, want, p.p.Cgroup)
	}
	if p.p.Cgroup2 != (p.p.Hierarchy == 0) || p.p.CgroupID == 0 {
		t.Errorf("cgroup2 %v, hierarchy %d, id %d", p.p.Cgroup2, p.p.Hierarchy, p.p.CgroupID)
	}
	if p.p.Cgroup2 && p.p.Cgroup2ID != p.p.CgroupID {
		t.Errorf("a cgroup2 choice whose id %d is not the cgroup2 id %d", p.p.CgroupID, p.p.Cgroup2ID)
	}
	if p.p.Cgroup2ID != del.Actor.CgroupID {
		t.Errorf("process cgroup2 id %d, event's %d", p.p.Cgroup2ID, del.Actor.CgroupID)
	}
}

// TestDevFromKernel: a route's device is named even when the link is gone
// before the tracer reads the record (created, routed through and deleted
// in one ip -batch): in tiers 1-2 the kernel sends the name (oif_name), in
// tier 3 the link's notifications do.
func TestDevFromKernel(t *testing.T) {
	ns := newNetns(t)
	s := hookSession(t, ns)
	batch := writeTemp(t, strings.Join([]string{
		"link add v2 type veth peer name v3",
		"link set v3 up",
		"link set v2 up",
		"route add 203.0.113.0/24 dev v2 proto static",
		"route add 2001:db8:5::/64 dev v2 proto static",
		"link del v2",
	}, "\n")+"\n")
	ns.IP("-batch", batch)
	evs := in(s.stop(), ns)

	for _, w := range []struct {
		op  event.Op
		dst string
	}{
		{event.OpAdd, "2001:db8:5::/64"},
		{event.OpDelete, "2001:db8:5::/64"},
		{event.OpDelete, "203.0.113.0/24"},
	} {
		n := 0
		for i := range evs {
			ev := &evs[i]
			if ev.Op != w.op || !ev.Dst.IsValid() || ev.Dst.String() != w.dst {
				continue
			}
			n++
			if ev.Dev.String() != "v2" || ev.Oif == 0 {
				t.Errorf("%s %s: dev %q (oif %d, %s), want v2", w.op, w.dst, ev.Dev.String(), ev.Oif, ev.Attach)
			}
		}
		if n != 1 {
			t.Errorf("%s %s reported %d times, want once", w.op, w.dst, n)
			for _, ev := range evs {
				t.Logf("got %s dev %q", got(&ev), ev.Dev.String())
			}
		}
	}
}
