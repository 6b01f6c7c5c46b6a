package enrich

import (
	"strings"
	"testing"
)

const (
	cid  = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
	cid2 = "aaefb9d8feed2d453b543f6d928cede7a4dbefa6a0ae7c9b990dd234c56e93b9"
	uid  = "2fc932ce-fdcc-454b-97bd-aadfdeb4c340"
	uidU = "2fc932ce_fdcc_454b_97bd_aadfdeb4c340" // as systemd slice names carry it
	// A static pod's UID: the MD5 of its manifest (kubernetes/kubernetes#106514).
	static = "36b6d6be73b1065af369b3985edafa09"
)

func TestParseCgroup(t *testing.T) {
	for _, tc := range []struct {
		path string
		want CgroupInfo
	}{
		// systemd units and scopes.
		{"/system.slice/systemd-networkd.service", CgroupInfo{Unit: "systemd-networkd.service"}},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", CgroupInfo{Unit: "foo.service"}},
		{"/user.slice/user-1000.slice/user@1000.service/init.scope", CgroupInfo{Unit: "init.scope"}},
		{"/user.slice/user-1000.slice/session-3.scope", CgroupInfo{Unit: "session-3.scope"}},
		{"/system.slice/run-u123.scope", CgroupInfo{Unit: "run-u123.scope"}},
		{"/init.scope", CgroupInfo{Unit: "init.scope"}},
		{"/system.slice/system-getty.slice/getty@tty1.service", CgroupInfo{Unit: "getty@tty1.service"}},
		// A delegated service's own subtree stays the service.
		{"/system.slice/containerd.service", CgroupInfo{Unit: "containerd.service"}},
		{"/system.slice/foo.service/payload", CgroupInfo{Unit: "foo.service"}},
		// Nothing said, nothing guessed.
		{"/", CgroupInfo{}},
		{"", CgroupInfo{}},
		{"/system.slice", CgroupInfo{}},
		{"/.service", CgroupInfo{}},
		{"/default/" + cid, CgroupInfo{}}, // ctr's namespace: whose ID, which runtime?
		{"/kubepods.slice", CgroupInfo{}},
		{"/kubepods.slice/kubepods-burstable.slice", CgroupInfo{}},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid + ".slice", CgroupInfo{}}, // dashes: not a systemd pod slice
		{"/kubepods.slice/kubepods-silver-pod" + uidU + ".slice", CgroupInfo{}},
		{"/foo-pod" + uidU + ".slice", CgroupInfo{}},
		{"/kubepods/burstable/pod" + strings.ToUpper(uid), CgroupInfo{}},
		{"/burstable/pod" + uid + "/" + cid, CgroupInfo{}},
		// Not a container's ID: a scope like any other.
		{"/system.slice/docker-" + cid[:63] + ".scope", CgroupInfo{Unit: "docker-" + cid[:63] + ".scope"}},
		{"/system.slice/docker-" + strings.ToUpper(cid) + ".scope", CgroupInfo{Unit: "docker-" + strings.ToUpper(cid) + ".scope"}},
		{"/system.slice/docker-" + cid, CgroupInfo{}}, // no .scope, no pod
		{"/system.slice/containerd.service/x:cri-containerd:" + cid[:10], CgroupInfo{Unit: "containerd.service"}},
		{"/system.slice/containerd.service/x:runc:" + cid, CgroupInfo{Unit: "containerd.service"}},

		// kubelet, systemd driver.
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "burstable", ContainerID: cid, Runtime: "containerd"}},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "besteffort", ContainerID: cid, Runtime: "crio"}},
		{"/kubepods.slice/kubepods-pod" + uidU + ".slice/docker-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "guaranteed", ContainerID: cid, Runtime: "docker"}},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
			CgroupInfo{Unit: "crio-conmon-" + cid + ".scope", PodUID: uid, QoS: "burstable", Runtime: "crio"}},
		// The pod's own cgroup (v1: the pod slice holds no process on v2).
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice",
			CgroupInfo{PodUID: uid, QoS: "burstable"}},
		// A static pod.
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + static + ".slice/cri-containerd-" + cid + ".scope",
			CgroupInfo{PodUID: static, QoS: "burstable", ContainerID: cid, Runtime: "containerd"}},
		// kind: --cgroup-root=/kubelet, seen from the host inside the node's container.
		{"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "besteffort", ContainerID: cid, Runtime: "containerd"}},
		{"/system.slice/docker-" + cid2 + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "guaranteed", ContainerID: cid, Runtime: "containerd"}},
		// kind's own kubelet: a unit of the node container's systemd.
		{"/system.slice/docker-" + cid2 + ".scope/system.slice/kubelet.service",
			CgroupInfo{Unit: "kubelet.service", ContainerID: cid2, Runtime: "docker"}},
		// minikube's docker driver without a cgroup namespace.
		{"/docker/" + cid2 + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "besteffort", ContainerID: cid, Runtime: "crio"}},
		// A v1 hierarchy's path is the same path.
		{"/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + cid + ".scope",
			CgroupInfo{PodUID: uid, QoS: "guaranteed", ContainerID: cid, Runtime: "crio"}},

		// containerd with SystemdCgroup=false under a systemd-driver kubelet.
		{"/system.slice/containerd.service/kubepods-burstable-pod" + uidU + ".slice:cri-containerd:" + cid,
			CgroupInfo{PodUID: uid, QoS: "burstable", ContainerID: cid, Runtime: "containerd"}},
		{"/system.slice/containerd.service/kubepods-burstable-pod" + static + ".slice:cri-containerd:" + cid,
			CgroupInfo{PodUID: static, QoS: "burstable", ContainerID: cid, Runtime: "containerd"}},
		{"/system.slice/containerd.service/kubepods-pod" + uidU + ".slice:cri-containerd:" + cid,
			CgroupInfo{PodUID: uid, QoS: "guaranteed", ContainerID: cid, Runtime: "containerd"}},
		{"/system.slice/crio.service/system.slice:crio:" + cid,
			CgroupInfo{ContainerID: cid, Runtime: "crio"}},

		// kubelet, cgroupfs driver.
		{"/kubepods/burstable/pod" + uid + "/" + cid, CgroupInfo{PodUID: uid, QoS: "burstable", ContainerID: cid}},
		{"/kubepods/besteffort/pod" + uid + "/" + cid, CgroupInfo{PodUID: uid, QoS: "besteffort", ContainerID: cid}},
		{"/kubepods/pod" + uid + "/" + cid, CgroupInfo{PodUID: uid, QoS: "guaranteed", ContainerID: cid}},
		{"/kubepods/pod" + uid, CgroupInfo{PodUID: uid, QoS: "guaranteed"}},
		{"/kubepods/burstable/pod" + static + "/" + cid, CgroupInfo{PodUID: static, QoS: "burstable", ContainerID: cid}},
		{"/kubepods/burstable/pod" + uid + "/crio-" + cid, CgroupInfo{PodUID: uid, QoS: "burstable", ContainerID: cid, Runtime: "crio"}},
		{"/kubepods/burstable/pod" + uid + "/crio-conmon-" + cid, CgroupInfo{Unit: "crio-conmon-" + cid, PodUID: uid, QoS: "burstable", Runtime: "crio"}},
		{"/kubelet/kubepods/burstable/pod" + uid + "/" + cid, CgroupInfo{PodUID: uid, QoS: "burstable", ContainerID: cid}},
		{"/docker/" + cid2 + "/kubepods/besteffort/pod" + uid + "/" + cid, CgroupInfo{PodUID: uid, QoS: "besteffort", ContainerID: cid}},
		{"/docker/" + cid2 + "/kubepods/besteffort/pod" + uid, CgroupInfo{PodUID: uid, QoS: "besteffort"}},

		// Docker alone, and Podman.
		{"/system.slice/docker-" + cid + ".scope", CgroupInfo{ContainerID: cid, Runtime: "docker"}},
		{"/docker/" + cid, CgroupInfo{ContainerID: cid, Runtime: "docker"}},
		{"/machine.slice/libpod-" + cid + ".scope", CgroupInfo{ContainerID: cid, Runtime: "podman"}},
		{"/machine.slice/libpod-" + cid + ".scope/container", CgroupInfo{ContainerID: cid, Runtime: "podman"}},
		{"/machine.slice/libpod-conmon-" + cid + ".scope", CgroupInfo{Unit: "libpod-conmon-" + cid + ".scope", Runtime: "podman"}},
		// Rootless containerd under a user manager.
		{"/user.slice/user-1001.slice/user@1001.service/user.slice/cri-containerd-" + cid + ".scope",
			CgroupInfo{ContainerID: cid, Runtime: "containerd"}},
	} {
		if got := ParseCgroup(tc.path); got != tc.want {
			t.Errorf("ParseCgroup(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
		}
	}
}

func TestParseCgroupAllocs(t *testing.T) {
	for _, tc := range []struct {
		path string
		max  float64
	}{
		{"/system.slice/systemd-networkd.service", 0},
		{"/kubepods/burstable/pod" + uid + "/" + cid, 0},
		{"/system.slice/docker-" + cid + ".scope", 0},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", 1},
	} {
		if n := testing.AllocsPerRun(100, func() { ParseCgroup(tc.path) }); n > tc.max {
			t.Errorf("ParseCgroup(%q): %v allocations, want at most %v", tc.path, n, tc.max)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	for _, s := range []string{
		"/system.slice/systemd-networkd.service",
		"/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
		"/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
		"/kubepods/burstable/pod" + uid + "/" + cid,
		"/kubepods/pod" + static + "/crio-" + cid,
		"/system.slice/containerd.service/kubepods-burstable-pod" + uidU + ".slice:cri-containerd:" + cid,
		"/docker/" + cid,
		"/system.slice/docker-" + cid2 + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got := ParseCgroup(path)
		if got.Unit != "" && (!strings.Contains(path, got.Unit) ||
			!(strings.HasSuffix(got.Unit, ".service") || strings.HasSuffix(got.Unit, ".scope") || strings.HasPrefix(got.Unit, "crio-conmon-")) ||
			strings.Contains(got.Unit, "/")) {
			t.Errorf("Unit %q: not a unit of %q", got.Unit, path)
		}
		if got.ContainerID != "" && (!isHex(got.ContainerID, 64) || !strings.Contains(path, got.ContainerID)) {
			t.Errorf("ContainerID %q: not 64 lowercase hex digits of %q", got.ContainerID, path)
		}
		if got.PodUID != "" {
			if !isPodUID(got.PodUID, '-') {
				t.Errorf("PodUID %q is neither a UUID nor a static pod's 32 hex digits", got.PodUID)
			}
			if !strings.Contains(path, got.PodUID) && !strings.Contains(path, strings.ReplaceAll(got.PodUID, "-", "_")) {
				t.Errorf("PodUID %q is not in %q", got.PodUID, path)
			}
		}
		switch got.QoS {
		case "":
			if got.PodUID != "" {
				t.Errorf("PodUID %q without a QoS class", got.PodUID)
			}
		case "guaranteed", "burstable", "besteffort":
			if got.PodUID == "" {
				t.Errorf("QoS %q without a pod", got.QoS)
			}
		default:
			t.Errorf("QoS %q", got.QoS)
		}
		switch got.Runtime {
		case "", "containerd", "crio", "docker", "podman":
		default:
			t.Errorf("Runtime %q", got.Runtime)
		}
	})
}
