package event

import "net/netip"

// The types below are what enrichment adds to an Event: names in the
// user's terms for the actor (unit, pod, container, command line) and the
// victim (interface kind, CNI, pod behind the route). An Event points at
// them; they live in the enricher's caches and are never changed once
// published (a newer answer is a new value), so an event costs no
// allocation to enrich and a sink may keep the pointers.

// Process is a process that made changes, as the kernel recorded it the
// first time it acted (so a process gone a millisecond later is still
// named), and what its cgroup path says.
type Process struct {
	Exe     string   // executable path, as its own mount namespace sees it
	Cmdline []string // argv
	// Cgroup is the path of the process's cgroup in the hierarchy the
	// kernel read (the deepest one: cgroup2 on a unified node, e.g. the
	// memory or name=systemd hierarchy on a v1 or hybrid one).
	Cgroup string
	// CgroupHierarchy is "cgroup2" or the v1 hierarchy's controllers
	// ("memory", "name=systemd").
	CgroupHierarchy string

	Unit        string // systemd unit or scope (system.slice/x.service → x.service)
	ContainerID string // 64 hex digits
	Runtime     string // containerd, crio, docker, podman
	PodUID      string
	QoS         string // guaranteed, burstable, besteffort

	// Container is the container from the container runtime or the
	// Kubernetes API; nil while unknown.
	Container *Container
	// EnrichError says why a lookup failed (e.g. "cri: no such container"),
	// "" when nothing failed.
	EnrichError string
}

// Pod is a Kubernetes pod on this node.
type Pod struct {
	Name      string
	Namespace string
	UID       string
	Labels    map[string]string
	IPs       []netip.Addr
	// HostNetwork pods share the node's addresses: they are never a route's
	// victim.
	HostNetwork bool
}

// Container is one container of a pod.
type Container struct {
	ID    string
	Name  string
	Image string
	Pod   *Pod
}

// Link is a network interface, as its namespace's link notifications
// described it.
type Link struct {
	Name   string
	Kind   string // veth, vxlan, bridge, ... ("" for a physical device)
	Master string // name of its bridge or VRF, if any
	CNI    string // the CNI plugin it belongs to (calico, cilium, flannel, ...)
}

// Victim is what a change hit: the route's device and the pods whose
// addresses the route's destination covers.
type Victim struct {
	Link *Link
	// Pod is set when the destination names exactly one pod (a /32 or /128
	// pod route); Pods counts the pods inside the destination otherwise
	// (a node's pod CIDR).
	Pod  *Pod
	Pods int
}
