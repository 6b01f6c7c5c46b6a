package nodefacts

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/policy"
)

const testPolicy = `protect:
  - prefix: 10.244.0.0/16
  - interface: "cali*"
  - protocol: bird
  - table: 100
allow:
  - unit: calico-node.service
  - cgroup: "/rt-owner*"
  - exe: "%s"
`

// Resolve inside a namespace laid out like a Calico node: protected routes
// by interface, protocol, table and prefix are found by their kernel keys,
// and nothing else is.
func TestResolve(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	ns.IP("link", "add", "cali1a2b3c4d", "type", "veth", "peer", "name", "c1")
	ns.IP("link", "set", "cali1a2b3c4d", "up")
	ns.IP("route", "add", "192.168.7.5/32", "dev", "cali1a2b3c4d", "scope", "link") // protected by interface only
	ns.IP("route", "add", "blackhole", "10.244.7.0/26", "proto", "bird")            // prefix and protocol
	ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.2", "proto", "bird")   // protocol
	ns.IP("route", "add", "203.0.113.0/24", "dev", "v0", "table", "100")            // table
	ns.IP("route", "add", "203.0.113.0/24", "dev", "v0")                            // nothing: main, no proto
	ns.IP("-6", "route", "add", "2001:db8:7::/64", "dev", "cali1a2b3c4d")           // interface, IPv6

	exe := filepath.Join(t.TempDir(), "owner")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("p.yaml", []byte(fmt.Sprintf(testPolicy, exe)))
	if err != nil {
		t.Fatal(err)
	}
	// A cgroup tree of our own, so the walk's answer is exact.
	cg := t.TempDir()
	for _, d := range []string{"system.slice/calico-node.service/sub", "system.slice/other.service", "rt-owner-1", "rt-other"} {
		if err := os.MkdirAll(filepath.Join(cg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ino := func(d string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(cg, d), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}

	r, err := New(Options{Policy: func() *policy.Policy { return p }, CgroupRoot: cg, Netns: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := r.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if f.Netns != ns.Inode {
		t.Errorf("netns %d, want %d", f.Netns, ns.Inode)
	}
	cali := ns.Ifindex("cali1a2b3c4d")
	if want := []Interface{{Ifindex: cali, Name: "cali1a2b3c4d", Rule: 1}}; !slices.Equal(f.Interfaces, want) {
		t.Errorf("interfaces %+v, want %+v", f.Interfaces, want)
	}
	var got []Route
	for _, rt := range f.Routes {
		if rt.Table != unix.RT_TABLE_LOCAL && !(rt.Family == unix.AF_INET6 && rt.Dst.Addr().IsLinkLocalUnicast()) {
			got = append(got, rt)
		}
	}
	want := []Route{
		{Family: unix.AF_INET, Table: 100, Dst: netip.MustParsePrefix("203.0.113.0/24"), Rule: 3},
		{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("10.244.7.0/26"), Rule: 0},
		{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("192.168.7.5/32"), Rule: 1},
		{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("198.51.100.0/24"), Rule: 2},
		{Family: unix.AF_INET6, Table: 254, Dst: netip.MustParsePrefix("2001:db8:7::/64"), Rule: 1},
	}
	sortRoutes(got)
	sortRoutes(want)
	if !slices.Equal(got, want) {
		t.Errorf("routes\n got %+v\nwant %+v", got, want)
	}
	// The unit's cgroup (not its descendant: the kernel checks ancestors)
	// and the cgroup pattern's match; nothing else.
	wantCg := []uint64{ino("system.slice/calico-node.service"), ino("rt-owner-1")}
	slices.Sort(wantCg)
	if !slices.Equal(f.Cgroups, wantCg) {
		t.Errorf("cgroups %v, want %v", f.Cgroups, wantCg)
	}
	if want := []Exe{{Dev: st.Dev, Ino: st.Ino}}; !slices.Equal(f.Exes, want) {
		t.Errorf("exes %+v, want %+v", f.Exes, want)
	}
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		if a.Family != b.Family {
			return int(a.Family) - int(b.Family)
		}
		if a.Table != b.Table {
			return int(a.Table) - int(b.Table)
		}
		return a.Dst.Addr().Compare(b.Dst.Addr())
	})
}

func TestCgroup2Mount(t *testing.T) {
	dir := t.TempDir()
	hybrid := "35 24 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n" +
		"36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
	path := filepath.Join(dir, "mountinfo")
	os.WriteFile(path, []byte(hybrid), 0o644)
	if got, err := cgroup2Mount(path); err != nil || got != "/sys/fs/cgroup/unified" {
		t.Errorf("hybrid: %q, %v", got, err)
	}
	os.WriteFile(path, []byte("35 24 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"), 0o644)
	if _, err := cgroup2Mount(path); err == nil {
		t.Error("no cgroup2 mount: no error")
	}
}

// Run follows the namespace: a protected route added after the start is
// published, and one deleted is withdrawn.
func TestRunFollows(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	p, err := policy.Parse("p.yaml", []byte("protect:\n  - prefix: 10.244.0.0/16\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Policy: func() *policy.Policy { return p }, CgroupRoot: t.TempDir(), Netns: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	facts := make(chan Facts, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, time.Hour, nil, func(f Facts) { facts <- f })
	next := func() Facts {
		select {
		case f := <-facts:
			return f
		case <-time.After(5 * time.Second):
			t.Fatal("no facts published within 5 s")
		}
		return Facts{}
	}
	if f := next(); len(f.Routes) != 0 {
		t.Fatalf("at start: %+v", f.Routes)
	}
	ns.IP("route", "add", "10.244.3.0/24", "dev", "v0")
	want := []Route{{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("10.244.3.0/24"), Rule: 0}}
	if f := next(); !slices.Equal(f.Routes, want) {
		t.Fatalf("after the add: %+v, want %+v", f.Routes, want)
	}
	ns.IP("route", "del", "10.244.3.0/24", "dev", "v0")
	if f := next(); len(f.Routes) != 0 {
		t.Fatalf("after the delete: %+v", f.Routes)
	}
}
