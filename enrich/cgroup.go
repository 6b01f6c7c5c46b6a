package enrich

import "strings"

// CgroupInfo is what a cgroup path alone says about the processes in it.
// Every field is "" when the path does not say it: nothing is guessed.
type CgroupInfo struct {
	// Unit is the innermost systemd unit (a .service or .scope) the
	// process is in, below any container: "systemd-networkd.service",
	// "session-3.scope", "init.scope". A container's own scope
	// (cri-containerd-ID.scope, docker-ID.scope, ...) is not a unit here:
	// ContainerID names it better, so a process in a pod's container has
	// Unit "" unless the container runs systemd of its own, in which case
	// Unit is that systemd's unit (kind's node containers:
	// /system.slice/docker-ID.scope/system.slice/kubelet.service gives
	// ContainerID ID and Unit kubelet.service). conmon's scope
	// (crio-conmon-ID.scope) is a unit: conmon is not a container.
	Unit string
	// PodUID is the Kubernetes pod's UID with its dashes (systemd slice
	// names carry it with underscores). Static pods (manifests read by the
	// kubelet from disk) have a UID of 32 hex digits, the MD5 of the
	// manifest, not a UUID; their mirror pod in the API has another UID
	// and names this one in its kubernetes.io/config.mirror annotation.
	PodUID string
	// QoS is the pod's QoS class: guaranteed, burstable or besteffort
	// (guaranteed pods have no QoS level of their own in the hierarchy).
	// Set only with PodUID.
	QoS string
	// ContainerID is the 64 lowercase hex digits of the container.
	ContainerID string
	// Runtime is the container runtime the path's form belongs to:
	// containerd, crio, docker or podman. "" for the cgroupfs driver's
	// bare ID under a pod, which containerd and dockershim share.
	Runtime string
}

// ParseCgroup reads a cgroup path (/proc/PID/cgroup's third field, in the
// unified hierarchy or any v1 one) the way systemd, the kubelet and the
// container runtimes lay it out. It never allocates, except for a pod UID
// read from a systemd slice name (its underscores turned back into
// dashes).
//
// The forms, innermost component winning when they nest (a pod inside a
// kind or minikube node container):
//
//   - systemd units: /system.slice/NAME.service, /system.slice/run-u12.scope,
//     /init.scope, /user.slice/user-1000.slice/session-3.scope. A user's
//     own units run under their user manager, itself the system unit
//     user@UID.service:
//     /user.slice/user-1000.slice/user@1000.service/app.slice/foo.service
//     is foo.service of that user's manager (systemctl --user status
//     foo.service), the innermost unit.
//   - the kubelet's systemd driver (pkg/kubelet/cm/cgroup_manager_linux.go:
//     each level a slice whose name is the whole path joined by "-", and
//     dashes in the pod UID made underscores):
//     /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope,
//     guaranteed pods one level up (kubepods-pod<uid_>.slice), and under
//     a --cgroup-root such as kind's /kubelet.slice/kubelet-kubepods.slice/...
//     Containers: cri-containerd-ID.scope (containerd), crio-ID.scope
//     (CRI-O), docker-ID.scope (Docker, dockershim or cri-dockerd),
//     crio-conmon-ID.scope (CRI-O's conmon: no container).
//   - the kubelet's cgroupfs driver: /kubepods/burstable/pod<uid>/<id>,
//     /kubepods/pod<uid>/<id>, under any prefix (/kubelet/kubepods/...,
//     /docker/ID/kubepods/...). CRI-O names its container crio-ID and
//     conmon crio-conmon-ID there; containerd and dockershim use the bare
//     ID, whose runtime the path does not say.
//   - runc's "slice:prefix:name" systemd path taken as a plain directory
//     when containerd runs runc with SystemdCgroup=false under a kubelet
//     with the systemd driver:
//     /system.slice/containerd.service/kubepods-burstable-pod<uid_>.slice:cri-containerd:<id>
//     (kubernetes/kubernetes#106514).
//   - Docker alone: /system.slice/docker-ID.scope (systemd driver),
//     /docker/ID (cgroupfs). Podman: libpod-ID.scope, libpod-conmon-ID.scope.
//   - rootless containerd under a user manager:
//     /user.slice/user-1001.slice/user@1001.service/user.slice/cri-containerd-ID.scope.
func ParseCgroup(path string) CgroupInfo {
	var info CgroupInfo
	var prev, prev2 string // the two components above the current one
	for rest := path; rest != ""; {
		var c string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			c, rest = rest[:i], rest[i+1:]
		} else {
			c, rest = rest, ""
		}
		if c == "" {
			continue
		}
		switch {
		case parsePodDir(c, prev, prev2, &info):
		case parseContainer(c, prev, &info):
		case strings.HasSuffix(c, ".service") || strings.HasSuffix(c, ".scope"):
			if len(c) > len(".scope") && !strings.HasPrefix(c, ".") {
				info.Unit = c
			}
		}
		prev2, prev = prev, c
	}
	return info
}

// parsePodDir recognises a pod's own cgroup: a systemd pod slice
// (...kubepods[-QOS]-pod<uid_>.slice) or a cgroupfs pod directory
// (pod<uid> under kubepods or kubepods/QOS). A pod inside a container
// (a kind node) starts a new, inner, answer.
func parsePodDir(c, prev, prev2 string, info *CgroupInfo) bool {
	var uid, qos string
	if stem, ok := strings.CutSuffix(c, ".slice"); ok {
		var ok bool
		if uid, qos, ok = podSlice(stem); !ok {
			return false
		}
	} else if u, ok := strings.CutPrefix(c, "pod"); ok && isPodUID(u, '-') {
		switch {
		case prev == "kubepods":
			qos = "guaranteed"
		case prev2 == "kubepods" && (prev == "burstable" || prev == "besteffort"):
			qos = prev
		default:
			return false
		}
		uid = u
	} else {
		return false
	}
	*info = CgroupInfo{PodUID: uid, QoS: qos}
	return true
}

// podSlice parses a systemd pod slice's name without ".slice":
// [PREFIX-]kubepods-pod<uid>, [PREFIX-]kubepods-burstable-pod<uid>,
// [PREFIX-]kubepods-besteffort-pod<uid>, the UID's dashes made
// underscores.
func podSlice(stem string) (uid, qos string, ok bool) {
	i := strings.LastIndex(stem, "-pod")
	if i < 0 {
		return "", "", false
	}
	parent, u := stem[:i], stem[i+len("-pod"):]
	switch {
	case isKubepods(parent):
		qos = "guaranteed"
	case strings.HasSuffix(parent, "-burstable") && isKubepods(parent[:len(parent)-len("-burstable")]):
		qos = "burstable"
	case strings.HasSuffix(parent, "-besteffort") && isKubepods(parent[:len(parent)-len("-besteffort")]):
		qos = "besteffort"
	default:
		return "", "", false
	}
	switch {
	case isPodUID(u, '_'):
		return strings.ReplaceAll(u, "_", "-"), qos, true
	case isHex(u, 32):
		return u, qos, true // a static pod's UID
	}
	return "", "", false
}

// isKubepods reports whether a slice stem is the kubelet's top slice:
// kubepods, or kubepods under a --cgroup-root (kubelet-kubepods).
func isKubepods(s string) bool {
	return s == "kubepods" || strings.HasSuffix(s, "-kubepods")
}

// isPodUID reports whether s is a lowercase UUID with sep between its
// groups, or a static pod's 32 hex digits.
func isPodUID(s string, sep byte) bool {
	if len(s) == 32 {
		return isHex(s, 32)
	}
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != sep {
				return false
			}
		default:
			if !isLowerHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isLowerHex(b byte) bool { return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' }

// isHex reports whether s is exactly n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

// scopeRuntimes maps a container scope's prefix to its runtime. The
// conmon forms come first: crio-conmon-ID would otherwise read as crio-
// followed by a malformed ID (and be rejected, but then not named).
var scopeRuntimes = [...]struct {
	prefix, runtime string
	conmon          bool
}{
	{"crio-conmon-", "crio", true},
	{"libpod-conmon-", "podman", true},
	{"cri-containerd-", "containerd", false},
	{"crio-", "crio", false},
	{"docker-", "docker", false},
	{"libpod-", "podman", false},
}

// parseContainer recognises a container's cgroup (or conmon's) in any of
// the forms ParseCgroup lists. It keeps the pod the path named above it.
func parseContainer(c, prev string, info *CgroupInfo) bool {
	// runc's systemd path used as a directory: slice:prefix:id.
	if i := strings.IndexByte(c, ':'); i >= 0 {
		slice, rest := c[:i], c[i+1:]
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return false
		}
		prefix, id := rest[:j], rest[j+1:]
		var runtime string
		switch prefix {
		case "cri-containerd":
			runtime = "containerd"
		case "crio":
			runtime = "crio"
		case "docker":
			runtime = "docker"
		default:
			return false
		}
		if !isHex(id, 64) {
			return false
		}
		*info = CgroupInfo{}
		if stem, ok := strings.CutSuffix(slice, ".slice"); ok {
			if uid, qos, ok := podSlice(stem); ok {
				info.PodUID, info.QoS = uid, qos
			}
		}
		info.ContainerID, info.Runtime = id, runtime
		return true
	}
	inPod := info.PodUID != "" && info.ContainerID == "" && info.Unit == "" && info.Runtime == ""
	stem, scope := strings.CutSuffix(c, ".scope")
	for _, r := range scopeRuntimes {
		id, ok := strings.CutPrefix(stem, r.prefix)
		if !ok || !isHex(id, 64) {
			continue
		}
		// The cgroupfs driver's CRI-O forms have no .scope, and exist only
		// under a pod; the other prefixes are systemd scopes.
		if !scope && !(inPod && r.runtime == "crio") {
			return false
		}
		setContainer(info, inPod)
		info.Runtime = r.runtime
		if r.conmon {
			info.Unit = c
		} else {
			info.ContainerID = id
		}
		return true
	}
	if !isHex(c, 64) {
		return false
	}
	switch {
	case inPod:
		setContainer(info, true)
		info.ContainerID = c
	case prev == "docker":
		setContainer(info, false)
		info.ContainerID, info.Runtime = c, "docker"
	default:
		return false
	}
	return true
}

// setContainer starts a container's answer, keeping the pod above it when
// the container is the pod's.
func setContainer(info *CgroupInfo, inPod bool) {
	if inPod {
		*info = CgroupInfo{PodUID: info.PodUID, QoS: info.QoS}
	} else {
		*info = CgroupInfo{}
	}
}
