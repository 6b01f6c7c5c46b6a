package enrich

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/containerdtest"
	"github.com/routetrace/routetrace/rtnl"
)

// Against a real containerd (cgroupfs driver, ptp pods): a container's
// cgroup path names its pod and itself, the run's CNI config is "ptp", and
// the pod's host veth and its own eth0 are in the link cache, each in its
// namespace.
func TestEnrichRealPod(t *testing.T) {
	r := containerdtest.Start(t)
	pod := r.RunPod(t, containerdtest.PodSpec{Name: "links-0", UID: "12345678-9abc-4def-8123-456789abcdef"})
	ctr := r.RunContainer(t, pod, "sleeper")

	// The cgroup path, in every hierarchy the container has one in.
	pid := r.ContainerPID(t, ctr)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	want := CgroupInfo{PodUID: pod.UID, QoS: "besteffort", ContainerID: ctr}
	matched := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			t.Fatalf("malformed /proc/%d/cgroup line %q", pid, line)
		}
		got := ParseCgroup(parts[2])
		switch got {
		case want:
			matched++
		case CgroupInfo{}:
			// A hierarchy containerd did not put it in.
		default:
			t.Errorf("ParseCgroup(%q) (hierarchy %q) = %+v, want %+v", parts[2], parts[1], got, want)
		}
	}
	t.Logf("%d of the container's cgroup paths name it, e.g. %s", matched, strings.SplitN(strings.SplitN(string(b), "\n", 2)[0], ":", 3)[2])
	if matched == 0 {
		t.Errorf("no hierarchy's path in /proc/%d/cgroup names the container:\n%s", pid, b)
	}

	cni, err := ConfiguredCNI(r.CNIConfDir())
	if err != nil || cni != "ptp" {
		t.Fatalf("ConfiguredCNI(%s) = %q, %v; want ptp", r.CNIConfDir(), cni, err)
	}

	l := startLinks(t, LinksOptions{CNI: cni})
	self, err := rtnl.NetnsInode("")
	if err != nil {
		t.Fatal(err)
	}
	hostLinks, err := rtnl.Links("")
	if err != nil {
		t.Fatal(err)
	}
	var veth uint32
	for idx, name := range hostLinks {
		if name == pod.HostVeth {
			veth = idx
		}
	}
	if veth == 0 {
		t.Fatalf("the pod's host veth %s is not among the host's links", pod.HostVeth)
	}
	// The ptp plugin names its host side veth<8 hex>: the configured CNI's.
	wantCNI := ""
	if hexAfter(pod.HostVeth, "veth", 8, 8) {
		wantCNI = "ptp"
	}
	waitLink(t, l, self, veth, event.Link{Name: pod.HostVeth, Kind: "veth", CNI: wantCNI})
	if wantCNI == "" {
		t.Errorf("the ptp plugin's host veth is named %q, not veth<8 hex>", pod.HostVeth)
	}

	podNetns, err := rtnl.NetnsInode(pod.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	podLinks, err := rtnl.Links(pod.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	for idx, name := range podLinks {
		if name == "eth0" {
			waitLink(t, l, podNetns, idx, event.Link{Name: "eth0", Kind: "veth"})
		}
	}
}
