// Package nodefacts turns an enforcement policy's names into the kernel's
// identities on this node, and keeps them current: the BPF enforcer judges
// a request by ifindex, route key, cgroup id and executable inode, while a
// policy says "cali*", "calico-node.service" and "/usr/sbin/bird".
//
//   - Interfaces: links whose name matches an interface entry.
//   - Routes: routes that exist now and are protected (through a protected
//     interface, of a protected protocol, in a protected table, inside a
//     protected prefix): `ip route del 10.244.1.5/32` names neither device
//     nor protocol, so the kernel side looks the route up by its key.
//   - Cgroups: every cgroup (v2) an allow entry names, by unit, pod,
//     container or path; the kernel checks the actor's cgroup and its
//     ancestors, so processes started later in them are allowed too.
//   - Executables: the inodes of the files an exe entry matches.
//
// One Resolver follows one network namespace: by default the enforcing
// agent's own (the node's, where the CNI's routes and rules are).
package nodefacts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/policy"
)

// Facts are the kernel identities of a policy's names at one moment.
type Facts struct {
	Netns      uint32 // inode of the namespace the facts are of
	Interfaces []Interface
	Routes     []Route
	Cgroups    []uint64
	Exes       []Exe
}

// Interface is a link a protect entry names.
type Interface struct {
	Ifindex uint32
	Name    string
	Rule    int // index of the protect entry
}

// Route is an existing protected route, by the key the kernel looks it up
// with (table 0 is main, as the kernel reads it).
type Route struct {
	Family uint8
	Table  uint32
	Dst    netip.Prefix
	Rule   int
}

// Exe is an executable's identity: its filesystem's device and its inode.
type Exe struct {
	Dev uint64
	Ino uint64
}

// Options configure a Resolver.
type Options struct {
	// Policy returns the policy in force (it may change between calls).
	Policy func() *policy.Policy
	// Process says who a process in a cgroup is (unit, container, pod):
	// the enricher's ProcessForCgroup. nil: the unit and container id
	// from the path only, so pod entries match nothing.
	Process func(cgroupPath string) *event.Process
	// CgroupRoot is the cgroup2 mount; "" finds it in /proc/self/mountinfo.
	CgroupRoot string
	// Netns is the namespace to follow (a path: /run/netns/NAME,
	// /proc/PID/ns/net); "" is the calling thread's.
	Netns  string
	Logger *slog.Logger
}

// Resolver computes Facts and follows the node's changes.
type Resolver struct {
	opts   Options
	log    *slog.Logger
	netns  uint32
	handle netns.NsHandle
	// mu serializes the dumps: a netlink.Handle's socket is not for two
	// requests at once (Run's rescans and a reload's ResolveFor).
	mu sync.Mutex
	nl *netlink.Handle
}

// New returns a resolver for opts.Netns. Close releases it.
func New(opts Options) (*Resolver, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CgroupRoot == "" {
		root, err := Cgroup2Mount()
		if err != nil {
			return nil, err
		}
		opts.CgroupRoot = root
	}
	path := opts.Netns
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return nil, fmt.Errorf("reading the inode of network namespace %s: %w", path, err)
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening netlink in %s: %w", path, err)
	}
	return &Resolver{opts: opts, log: opts.Logger, netns: uint32(st.Ino), handle: h, nl: nl}, nil
}

// Close releases the namespace and its netlink sockets.
func (r *Resolver) Close() {
	r.nl.Close()
	r.handle.Close()
}

// Netns is the inode of the namespace the resolver follows.
func (r *Resolver) Netns() uint32 { return r.netns }

// Resolve computes the facts of the policy in force now.
func (r *Resolver) Resolve() (Facts, error) { return r.ResolveFor(r.opts.Policy()) }

// ResolveFor computes the facts of p: a policy about to be put in force.
func (r *Resolver) ResolveFor(p *policy.Policy) (Facts, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := Facts{Netns: r.netns}
	links, err := r.nl.LinkList()
	if err != nil {
		return f, fmt.Errorf("listing links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		if i := p.ProtectedInterface(a.Name); i >= 0 {
			f.Interfaces = append(f.Interfaces, Interface{Ifindex: uint32(a.Index), Name: a.Name, Rule: i})
		}
	}
	routes, err := r.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return f, fmt.Errorf("listing routes: %w", err)
	}
	for i := range routes {
		if rt, ok := protectedRoute(p, &routes[i], names); ok {
			f.Routes = append(f.Routes, rt)
		}
	}
	f.Cgroups, err = r.allowedCgroups(p)
	if err != nil {
		return f, err
	}
	f.Exes = allowedExes(p, r.log)
	return f, nil
}

// protectedRoute judges a route as its deletion would be judged.
func protectedRoute(p *policy.Policy, rt *netlink.Route, names map[int]string) (Route, bool) {
	family := uint8(rt.Family)
	if rt.Dst == nil && family == 0 {
		return Route{}, false
	}
	ev := event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: family, Table: uint32(rt.Table),
		Protocol: uint8(rt.Protocol), Type: uint8(rt.Type), Oif: uint32(rt.LinkIndex), Priority: uint32(rt.Priority)}
	ev.Dst = routeDst(rt)
	if n := names[rt.LinkIndex]; n != "" {
		ev.Dev.Set(n)
	}
	if len(rt.MultiPath) > 0 {
		ev.Multipath = true
		// A multipath route is protected when any of its paths goes
		// through a protected interface.
		for _, nh := range rt.MultiPath {
			if n := names[nh.LinkIndex]; n != "" && p.ProtectedInterface(n) >= 0 {
				ev.Dev.Set(n)
				break
			}
		}
	}
	rule := p.Protects(&ev)
	if rule == nil {
		return Route{}, false
	}
	table := uint32(rt.Table)
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	return Route{Family: family, Table: table, Dst: ev.Dst, Rule: rule.Index}, true
}

// routeDst is the route's destination; the default route has none in
// netlink's form.
func routeDst(rt *netlink.Route) netip.Prefix {
	if rt.Dst == nil {
		if rt.Family == unix.AF_INET6 {
			return netip.MustParsePrefix("::/0")
		}
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	a, ok := netip.AddrFromSlice(rt.Dst.IP)
	if !ok {
		return netip.Prefix{}
	}
	if rt.Family == unix.AF_INET {
		a = a.Unmap()
	}
	bits, _ := rt.Dst.Mask.Size()
	return netip.PrefixFrom(a, bits).Masked()
}

// allowedCgroups walks the cgroup2 tree and keeps the ids of cgroups an
// allow entry names. Descendants need not be listed: the kernel side
// checks the actor's ancestors too.
func (r *Resolver) allowedCgroups(p *policy.Policy) ([]uint64, error) {
	if !p.AllowsByCgroup() {
		return nil, nil
	}
	root := r.opts.CgroupRoot
	var ids []uint64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a cgroup removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(path, root), "/")
		var proc *event.Process
		if r.opts.Process != nil {
			proc = r.opts.Process(rel)
		}
		if proc == nil {
			info := enrich.ParseCgroup(rel)
			proc = &event.Process{Cgroup: rel, CgroupHierarchy: "cgroup2", Unit: info.Unit, ContainerID: info.ContainerID}
		}
		if !p.AllowsProcess(proc) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			ids = append(ids, st.Ino) // a cgroup2 directory's inode is its cgroup id
		}
		return fs.SkipDir // its descendants are covered by the ancestor check
	})
	if err != nil {
		return nil, fmt.Errorf("walking %s for the allowed cgroups: %w", root, err)
	}
	slices.Sort(ids)
	return ids, nil
}

// allowedExes resolves exe globs to the files they match now.
func allowedExes(p *policy.Policy, log *slog.Logger) []Exe {
	var out []Exe
	for _, pattern := range p.AllowedExes() {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			continue // validated at load
		}
		for _, m := range matches {
			var st unix.Stat_t
			if err := unix.Stat(m, &st); err != nil {
				log.Debug("allowed executable not readable", "path", m, "err", err)
				continue
			}
			out = append(out, Exe{Dev: st.Dev, Ino: st.Ino})
		}
	}
	return out
}

// Cgroup2Mount finds where the unified hierarchy is mounted: /sys/fs/cgroup
// on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
func Cgroup2Mount() (string, error) { return cgroup2Mount("/proc/self/mountinfo") }

func cgroup2Mount(mountinfo string) (string, error) {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return "", fmt.Errorf("finding the cgroup2 mount: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options - fstype source super
		left, right, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(left), strings.Fields(right)
		if len(fields) >= 5 && len(tail) >= 1 && tail[0] == "cgroup2" {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup2 filesystem is mounted: allow entries by unit, pod, container or cgroup need one " +
		"(mount -t cgroup2 none /sys/fs/cgroup/unified)")
}

// Run calls changed with new facts whenever they differ from the last:
// at once for links and routes (rtnetlink notifications, coalesced over
// 10 ms), every rescan for cgroups and executables, and after Refresh.
func (r *Resolver) Run(ctx context.Context, rescan time.Duration, refresh <-chan struct{}, changed func(Facts)) error {
	done := make(chan struct{})
	defer close(done)
	linkCh := make(chan netlink.LinkUpdate, 256)
	routeCh := make(chan netlink.RouteUpdate, 4096)
	errs := func(err error) { r.log.Warn("following links and routes for the enforcer", "err", err) }
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{Namespace: &r.handle, ErrorCallback: errs}); err != nil {
		return fmt.Errorf("subscribing to link changes: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routeCh, done, netlink.RouteSubscribeOptions{Namespace: &r.handle, ErrorCallback: errs}); err != nil {
		return fmt.Errorf("subscribing to route changes: %w", err)
	}
	var last Facts
	// A dump of every route costs in proportion to the table (tens of
	// milliseconds for 100,000 routes): under churn, resolve at most
	// every twice as long as the last resolve took.
	var lastCost time.Duration
	publish := func() {
		start := time.Now()
		f, err := r.Resolve()
		lastCost = time.Since(start)
		if err != nil {
			r.log.Warn("resolving the policy's names on this node (the last facts stay in force)", "err", err)
			return
		}
		if !f.equal(&last) {
			last = f
			changed(f)
		}
	}
	publish()
	tick := time.NewTicker(rescan)
	defer tick.Stop()
	var soon <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-linkCh:
			if soon == nil {
				soon = time.After(coalesce(lastCost))
			}
		case <-routeCh:
			if soon == nil {
				soon = time.After(coalesce(lastCost))
			}
		case <-soon:
			soon = nil
			publish()
		case <-refresh:
			publish()
		case <-tick.C:
			publish()
		}
	}
}

func (f *Facts) equal(o *Facts) bool {
	return f.Netns == o.Netns && slices.Equal(f.Interfaces, o.Interfaces) && slices.Equal(f.Routes, o.Routes) &&
		slices.Equal(f.Cgroups, o.Cgroups) && slices.Equal(f.Exes, o.Exes)
}

// coalesce is how long notifications are gathered before resolving again.
func coalesce(lastCost time.Duration) time.Duration {
	return max(10*time.Millisecond, 2*lastCost)
}
