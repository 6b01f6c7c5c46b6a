package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/routetrace/routetrace/event"
)

// testNetns makes a network namespace named for the test and this process,
// removed when the test ends.
func testNetns(t *testing.T, suffix string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("not root: ip netns add needs CAP_SYS_ADMIN")
	}
	name := fmt.Sprintf("rtpolicy-%d-%s", os.Getpid(), suffix)
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// fakeProc makes a proc root of processes: pid → comm and /proc/PID/cgroup.
func fakeProc(t *testing.T, procs map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, content := range map[string]string{"comm": p[0] + "\n", "cgroup": p[1]} {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// TestAutoCalico builds a node's routing state the way Calico leaves it
// (pod veths cali<hex> with /32 routes of protocol bird, the IPAM block's
// blackhole route, a VXLAN device) plus a rule to a table of its own, and
// runs Auto inside that namespace.
func TestAutoCalico(t *testing.T) {
	ns := testNetns(t, "calico")
	for _, pair := range [][2]string{{"cali1234abcd", "pod1234abcd"}, {"cali5678ef01", "pod5678ef01"}} {
		ip(t, "-n", ns, "link", "add", pair[0], "type", "veth", "peer", "name", pair[1])
		ip(t, "-n", ns, "link", "set", pair[0], "up")
		ip(t, "-n", ns, "link", "set", pair[1], "up")
	}
	ip(t, "-n", ns, "link", "add", "vxlan.calico", "type", "vxlan", "id", "4096", "dstport", "4789")
	for _, r := range [][]string{
		{"10.244.7.1/32", "dev", "cali1234abcd", "proto", "bird"},
		{"10.244.7.2/32", "dev", "cali5678ef01", "proto", "bird"},
		{"blackhole", "10.244.7.0/26", "proto", "bird"},
		// Pod routes outside any block: protected exactly, merged.
		{"10.244.9.4/32", "dev", "cali5678ef01", "proto", "bird"},
		{"10.244.9.5/32", "dev", "cali1234abcd", "proto", "bird"},
		{"10.244.9.9/32", "dev", "cali1234abcd", "proto", "bird"},
		// Not a CNI's: a route on the pod side of a veth, a blackhole of
		// another protocol.
		{"192.168.50.0/24", "dev", "pod1234abcd"},
		{"blackhole", "192.168.60.0/24", "proto", "boot"},
	} {
		ip(t, append([]string{"-n", ns, "route", "add"}, r...)...)
	}
	ip(t, "-n", ns, "rule", "add", "from", "10.244.7.0/26", "table", "100", "priority", "1000")
	ip(t, "-n", ns, "rule", "add", "from", "10.244.7.64/26", "table", "100", "priority", "1001")

	procRoot := fakeProc(t, map[string][2]string{
		"100": {"calico-node", "0::/system.slice/calico-node.service\n"},
		"200": {"bird", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"},
		"300": {"bash", "0::/user.slice/user-0.slice/session-1.scope\n"},
	})

	// Auto's default: a netlink handle in the calling thread's namespace.
	// The thread stays locked: if returning to the host's namespace failed,
	// the runtime ends the thread with the test's goroutine.
	runtime.LockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	p, autoErr := Auto(AutoOptions{ProcRoot: procRoot, CNIConfDir: t.TempDir()})
	if err := netns.Set(host); err != nil {
		t.Fatalf("back to the host's namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if autoErr != nil {
		t.Fatal(autoErr)
	}

	want := `# routetrace enforcement policy (see README#enforce), from auto
# Built by --policy auto from this node: review it before saving it.
mode: auto
protect:
  # blackhole 10.244.7.0/26 proto bird (a CNI's IPAM block); 2 pod routes on cali* links
  - prefix: 10.244.7.0/26
  # pod routes with no CNI block route covering them: their addresses exactly; 2 pod routes on cali* links
  - prefix: 10.244.9.4/31
  # pod routes with no CNI block route covering them: their addresses exactly; 1 pod route on cali* links
  - prefix: 10.244.9.9/32
  # 5 routes on cali* links (calico, 2 links)
  - interface: cali*
  # 0 routes on vxlan.calico links (calico, 1 link)
  - interface: vxlan.calico
  # 2 inet rules looking up table 100
  - rule: {priority: 1000-1001, table: 100, family: inet}
  # the routes of table 100, which the rules above look up
  - table: 100
# who may still change protected state
allow:
  # CNI agent: calico-node (pid 100) runs in calico-node.service
  - unit: calico-node.service
  # CNI agent: bird (pid 200) runs outside a systemd unit
  - comm: bird
operations:
  replace: true
  more-specific: false
`
	if got := string(p.Marshal()); got != want {
		t.Errorf("policy:\n%s\nwant:\n%s", got, want)
	}
	// The entries themselves, as the matcher reads them.
	back := mustParse(t, want)
	if !equalPolicies(p, back, false) {
		t.Errorf("got %+v, want %+v", p, back)
	}
	if got := p.Protect[0].String(); got != "protect[0] prefix 10.244.7.0/26 (auto)" {
		t.Errorf("protect[0] is %q", got)
	}
	// The policy protects what it was made from.
	ev := &event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Dst: netip.MustParsePrefix("10.244.7.1/32"), Table: 254}
	ev.Actor.Tgid = 5
	ev.Actor.Comm.Set("ip")
	if j := p.Judge(ev); !j.Enforced() {
		t.Errorf("deleting a pod route: %+v", j)
	}
}

func TestAutoNothingFound(t *testing.T) {
	ns := testNetns(t, "empty")
	target, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p, err := Auto(AutoOptions{Handle: h, ProcRoot: t.TempDir(), CNIConfDir: t.TempDir()})
	if !errors.Is(err, ErrNoCNI) {
		t.Fatalf("error %v, want ErrNoCNI", err)
	}
	if err.Error() != "no CNI links or pod routes found: write the policy by hand (see README#enforce)" {
		t.Errorf("error %q", err)
	}
	want := `# routetrace enforcement policy (see README#enforce), from auto
# Nothing CNI-like was found here: no CNI links, no pod routes.
# Write the protect list by hand (see README#enforce).
# no CNI agent running (calico-node, bird, bird6, confd, felix, cilium-agent, flanneld, aws-k8s-agent, kube-router, weaver): nobody is allowed; add the owner
mode: auto
protect: []
# who may still change protected state
allow: []
operations:
  replace: true
  more-specific: false
`
	if got := string(p.Marshal()); got != want {
		t.Errorf("policy:\n%s\nwant:\n%s", got, want)
	}
}

func TestAgentEntries(t *testing.T) {
	root := fakeProc(t, map[string][2]string{
		"100": {"calico-node", "0::/system.slice/calico-node.service\n"},
		"101": {"calico-node", "0::/system.slice/calico-node.service\n"},
		"200": {"felix", "0::/user.slice/user-0.slice/session-3.scope\n"},
		"300": {"confd", "12:memory:/system.slice/confd.service\n1:name=systemd:/system.slice/confd.service\n0::/\n"},
		"400": {"cilium-agent", "0::/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"},
		"500": {"sshd", "0::/system.slice/ssh.service\n"},
	})
	if err := os.Mkdir(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "600"), 0o755); err != nil { // exited: no comm
		t.Fatal(err)
	}
	got, err := agentEntries(AutoOptions{ProcRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	want := []Allow{
		{Unit: "calico-node.service", Comment: "CNI agent: calico-node (pid 100) runs in calico-node.service; calico-node (pid 101) runs in calico-node.service"},
		{Comm: "felix", Comment: "CNI agent: felix (pid 200) runs outside a systemd unit"},
		{Unit: "confd.service", Comment: "CNI agent: confd (pid 300) runs in confd.service"},
		{Comm: "cilium-agent", Comment: "CNI agent: cilium-agent (pid 400) runs outside a systemd unit"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := agentEntries(AutoOptions{ProcRoot: filepath.Join(root, "missing")}); err == nil {
		t.Error("no error for a missing proc root")
	}
}

// TestAgentEntriesRealProc finds this test process in the real /proc when
// its command name is taken for an agent's.
func TestAgentEntriesRealProc(t *testing.T) {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	self := strings.TrimSuffix(string(b), "\n")
	got, err := agentEntries(AutoOptions{Agents: []string{self}})
	if err != nil {
		t.Fatal(err)
	}
	want := Allow{Comm: escapeGlob(self)}
	if unit := processUnit("/proc/self/cgroup"); unit != "" {
		want = Allow{Unit: escapeGlob(unit)}
	}
	mine := fmt.Sprintf("%s (pid %d) ", self, os.Getpid())
	for _, a := range got {
		if a.Unit == want.Unit && a.Comm == want.Comm && strings.Contains(a.Comment, mine) {
			return
		}
	}
	t.Errorf("this process (%s) not found as %+v: %+v", mine, want, got)
}

func TestLinkGlob(t *testing.T) {
	for name, want := range map[string]string{
		"cali1234abcd": "cali*", "lxc0a1b2c": "lxc*", "lxc_health": "lxc_health", "eni0123456789a": "eni*",
		"vethwepl123": "vethwepl*", "veth0a1b2c3d": "veth*", "cilium_host": "cilium_host",
		"flannel.1": "flannel.1", "cali": "cali", "odd*name": `odd\*name`,
	} {
		if got := linkGlob(name); got != want {
			t.Errorf("linkGlob(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestMergeSiblings(t *testing.T) {
	var in []*podPrefix
	for _, s := range []string{"10.0.0.3/32", "10.0.0.0/32", "10.0.0.2/32", "10.0.0.1/32", "10.0.0.5/32", "fd00::1/128", "fd00::/128"} {
		in = append(in, &podPrefix{prefix: netip.MustParsePrefix(s), pods: 1})
	}
	var got []string
	for _, pp := range mergeSiblings(in) {
		got = append(got, fmt.Sprintf("%s:%d", pp.prefix, pp.pods))
	}
	if want := "10.0.0.0/30:4 10.0.0.5/32:1 fd00::/127:2"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}
