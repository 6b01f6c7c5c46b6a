package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

// Options configure an Enricher.
type Options struct {
	// CRISocket is the container runtime's CRI endpoint: "" finds one at
	// the runtimes' default paths, "none" turns the source off.
	CRISocket string
	// Kubeconfig enables the Kubernetes API as a pod source: a kubeconfig
	// path, or "in-cluster". "" leaves it off.
	Kubeconfig string
	// NodeName narrows the Kubernetes API to this node's pods ("" =
	// $NODE_NAME, else the host name).
	NodeName string
	// CNIConfDir holds the CNI network configurations (default
	// /etc/cni/net.d): the first one names the CNI in use.
	CNIConfDir string
	// Netns narrows the link watch like the tracer's --netns.
	Netns []string
	// Wait bounds how long an event whose actor runs in a container the
	// pod sources do not know yet is held back for their answer (default
	// 1 s). The tracer never waits: held events are queued behind it.
	Wait time.Duration
	// Sources replaces the CRI and Kubernetes sources (tests).
	Sources []Source
	Logger  *slog.Logger
}

// Enricher adds names to events. Its Enrich method runs on the tracer's
// event path: it only reads caches. Pod listings, link dumps and /proc
// reads happen on its own goroutines.
type Enricher struct {
	log     *slog.Logger
	opts    Options
	links   *Links
	sources []Source
	cni     string

	// procs is touched only by the goroutine that calls AddProcess and
	// Enrich (the tracer's Run goroutine).
	procs *procCache

	pods atomic.Pointer[podIndex]
	// runtime is the CRI runtime's name, for containers whose cgroup path
	// does not say (written once by the refresh loop, before an index that
	// needs it is published).
	runtime   atomic.Pointer[string]
	refreshCh chan struct{}
	refreshed chan struct{} // closed and replaced after each pod refresh
	refMu     sync.Mutex

	stats Stats

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Stats count what enrichment did, for the bench and the summary.
type Stats struct {
	Events       atomic.Uint64 // events enriched
	ProcHits     atomic.Uint64 // actor found in the kernel's process records
	ProcMisses   atomic.Uint64 // no record: named from /proc, or not at all
	PodHits      atomic.Uint64 // container found in the pod sources
	PodMisses    atomic.Uint64 // container not (yet) known to any source
	LinkHits     atomic.Uint64
	LinkMisses   atomic.Uint64
	Held         atomic.Uint64 // events held for a pod refresh
	HeldTimedOut atomic.Uint64 // held events sent without the answer
	Refreshes    atomic.Uint64
	RefreshErrs  atomic.Uint64
	// One Enrich call in 64 is timed: the cost per event without a clock
	// read on every one.
	SampledNs atomic.Uint64
	Sampled   atomic.Uint64
}

// New starts the link watch and the pod sources that are available. A
// source that cannot be reached is logged and left out: enrichment from the
// kernel's records still works without any.
func New(opts Options) (*Enricher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Wait == 0 {
		opts.Wait = time.Second
	}
	if opts.CNIConfDir == "" {
		opts.CNIConfDir = "/etc/cni/net.d"
	}
	e := &Enricher{
		log:       opts.Logger,
		opts:      opts,
		procs:     newProcCache(procCacheSize),
		refreshCh: make(chan struct{}, 1),
		refreshed: make(chan struct{}),
	}
	e.pods.Store(&podIndex{})
	if cni, err := ConfiguredCNI(opts.CNIConfDir); err == nil {
		e.cni = cni
	} else if !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("reading the CNI configuration", "err", err)
	}
	links, err := NewLinks(LinksOptions{Netns: opts.Netns, CNI: e.cni, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("watching links: %w", err)
	}
	e.links = links
	if opts.Sources != nil {
		e.sources = opts.Sources
	} else {
		e.sources = openSources(opts, e.log)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.links.Run(ctx)
	}()
	go func() {
		defer e.wg.Done()
		e.refreshLoop(ctx)
	}()
	return e, nil
}

// openSources opens the CRI socket (given or found) and the Kubernetes API
// (when asked for). Failures are logged: enrichment goes on without them.
func openSources(opts Options, log *slog.Logger) []Source {
	var out []Source
	if opts.CRISocket != "none" {
		ep := opts.CRISocket
		if ep == "" {
			ep, _ = DetectCRISocket()
		}
		if ep != "" {
			if s, err := NewCRISource(ep); err != nil {
				log.Warn("container runtime: pods and containers are not named", "endpoint", ep, "err", err)
			} else {
				out = append(out, s)
			}
		}
	}
	if opts.Kubeconfig != "" {
		kc := opts.Kubeconfig
		if kc == "in-cluster" {
			kc = ""
		}
		if s, err := NewKubeSource(KubeOptions{Kubeconfig: kc, NodeName: opts.NodeName, Logger: log}); err != nil {
			log.Warn("Kubernetes API: pod labels and names come only from the container runtime", "err", err)
		} else {
			out = append(out, s)
		}
	}
	return out
}

// Pods is the number of pods the sources listed last.
func (e *Enricher) Pods() int { return e.pods.Load().pods }

// WaitForPods waits for the first listing of the pod sources (at most
// refreshTimeout), so that a short run starts with them.
func (e *Enricher) WaitForPods() {
	if len(e.sources) == 0 || e.pods.Load().gen > 0 {
		return
	}
	select {
	case <-e.waitRefresh():
	case <-time.After(refreshTimeout):
	}
}

// CNI is the CNI the node's configuration names ("" if none).
func (e *Enricher) CNI() string { return e.cni }

// Sources are the pod sources in use.
func (e *Enricher) Sources() []Source { return e.sources }

// Stats returns the counters.
func (e *Enricher) Stats() *Stats { return &e.stats }

// Close stops the watches and the sources.
func (e *Enricher) Close() error {
	e.cancel()
	e.wg.Wait()
	var errs []error
	for _, s := range e.sources {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// AddProcess takes the kernel's record of a process: called by the tracer
// (Options.OnProcess) before the first event that names it.
func (e *Enricher) AddProcess(p *tracer.Process) {
	proc := &event.Process{
		Exe:             p.Exe,
		Cmdline:         p.Argv,
		Cgroup:          p.Cgroup,
		CgroupHierarchy: hierarchyName(p.Hierarchy, p.Cgroup2),
	}
	info := ParseCgroup(p.Cgroup)
	proc.Unit, proc.ContainerID, proc.Runtime, proc.PodUID, proc.QoS =
		info.Unit, info.ContainerID, info.Runtime, info.PodUID, info.QoS
	idx := e.pods.Load()
	e.resolveContainer(proc, idx)
	e.procs.put(p.Cookie, &procEntry{proc: proc, gen: idx.gen})
}

// resolveContainer sets proc.Container from the pod index, or asks for a
// refresh when the container is not known yet.
func (e *Enricher) resolveContainer(proc *event.Process, idx *podIndex) {
	if proc.ContainerID == "" {
		return
	}
	if c := idx.containers[proc.ContainerID]; c != nil {
		proc.Container = c
		proc.EnrichError = ""
		if rt := e.runtime.Load(); proc.Runtime == "" && rt != nil {
			proc.Runtime = *rt
		}
		return
	}
	if len(e.sources) == 0 {
		return
	}
	proc.EnrichError = "container not known to " + idx.sourceNames
	e.askRefresh()
}

// Enrich names the actor, the cause's actor and the victim of ev from the
// caches. It allocates only when a process's container became known since
// its record came (a new immutable value).
func (e *Enricher) Enrich(ev *event.Event) {
	if e.stats.Events.Add(1)%64 == 0 {
		start := time.Now()
		e.enrich(ev)
		e.stats.SampledNs.Add(uint64(time.Since(start)))
		e.stats.Sampled.Add(1)
		return
	}
	e.enrich(ev)
}

func (e *Enricher) enrich(ev *event.Event) {
	idx := e.pods.Load()
	e.enrichActor(&ev.Actor, idx)
	if ev.Cause.Valid {
		e.enrichActor(&ev.Cause.Actor, idx)
	}
	e.enrichVictim(ev, idx)
}

func (e *Enricher) enrichActor(a *event.Actor, idx *podIndex) {
	if a.Kernel || a.Tgid == 0 || a.Process != nil {
		return
	}
	ent := e.procs.get(a.Cookie)
	if ent == nil {
		e.stats.ProcMisses.Add(1)
		ent = e.fromProc(a)
		if ent == nil {
			return
		}
	} else {
		e.stats.ProcHits.Add(1)
	}
	if ent.proc.ContainerID != "" {
		if ent.proc.Container == nil && ent.gen != idx.gen {
			// The pod sources answered since: a new value, so that events
			// already sent keep what they had.
			p := *ent.proc
			e.resolveContainer(&p, idx)
			ent.proc, ent.gen = &p, idx.gen
		}
		if ent.proc.Container != nil {
			e.stats.PodHits.Add(1)
		} else {
			e.stats.PodMisses.Add(1)
		}
	}
	a.Process = ent.proc
}

// fromProc names a process the kernel sent no record of (a tracer started
// with records lost, or the record evicted) from /proc, if it still runs.
// Marked, since the process may have exec'd since the change.
func (e *Enricher) fromProc(a *event.Actor) *procEntry {
	key := a.Cookie
	if key == 0 {
		// No record at all: tiers 1-2 stamp none on a kernel removal's
		// cause (the FIB hook runs in the requester's task but not as its
		// request). Keyed by pid, which cookies (counter << 16 | CPU)
		// never are but for pids past 2^16 on CPU 0 - their high bit tells.
		key = 1<<63 | uint64(a.Tgid)
		if ent := e.procs.get(key); ent != nil {
			return ent
		}
	}
	dir := fmt.Sprintf("/proc/%d", a.Tgid)
	proc := &event.Process{EnrichError: "no kernel record of the process: read from " + dir}
	if b, err := os.ReadFile(dir + "/cmdline"); err == nil && len(b) > 0 {
		proc.Cmdline = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	} else {
		proc.EnrichError = "no kernel record of the process, and it has exited"
	}
	proc.Exe, _ = os.Readlink(dir + "/exe")
	if b, err := os.ReadFile(dir + "/cgroup"); err == nil {
		proc.Cgroup, proc.CgroupHierarchy = deepestCgroup(string(b))
		info := ParseCgroup(proc.Cgroup)
		proc.Unit, proc.ContainerID, proc.Runtime, proc.PodUID, proc.QoS =
			info.Unit, info.ContainerID, info.Runtime, info.PodUID, info.QoS
	}
	idx := e.pods.Load()
	e.resolveContainer(proc, idx)
	ent := &procEntry{proc: proc, gen: idx.gen}
	e.procs.put(key, ent)
	return ent
}

// deepestCgroup picks, from /proc/PID/cgroup, the path with the most
// components, as the kernel side does (ties to cgroup2).
func deepestCgroup(s string) (path, hierarchy string) {
	best := -1
	for _, l := range procCgroupLines(s) {
		depth := strings.Count(strings.Trim(l.path, "/"), "/")
		if l.path != "/" {
			depth++
		}
		if depth > best || (depth == best && l.hierarchy == "cgroup2") {
			best, path, hierarchy = depth, l.path, l.hierarchy
		}
	}
	return path, hierarchy
}

// procCgroupLine is one line of /proc/PID/cgroup, "ID:controllers:path".
type procCgroupLine struct {
	id        string
	hierarchy string // the controllers, "name=systemd", or "cgroup2" for "0::"
	path      string
}

func procCgroupLines(s string) []procCgroupLine {
	var out []procCgroupLine
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		l := procCgroupLine{id: parts[0], hierarchy: parts[1], path: parts[2]}
		if l.id == "0" && l.hierarchy == "" {
			l.hierarchy = "cgroup2"
		}
		out = append(out, l)
	}
	return out
}

func (e *Enricher) enrichVictim(ev *event.Event, idx *podIndex) {
	if ev.Oif != 0 && ev.Victim.Link == nil {
		if l := e.links.Lookup(ev.Netns, ev.Oif); l != nil {
			ev.Victim.Link = l
			e.stats.LinkHits.Add(1)
			if ev.Dev[0] == 0 {
				// A pod namespace's, or one gone since: the tracer names
				// only links it could list.
				ev.Dev.Set(l.Name)
			}
		} else {
			e.stats.LinkMisses.Add(1)
		}
	}
	if ev.Object != event.ObjectRoute || !ev.Dst.IsValid() || len(idx.ips) == 0 {
		return
	}
	if ev.Dst.IsSingleIP() {
		ev.Victim.Pod = idx.byIP[ev.Dst.Addr()]
		return
	}
	if ev.Dst.Bits() == 0 {
		return // a default route covers everything: naming no pod is clearer
	}
	ev.Victim.Pods = idx.countIn(ev.Dst)
}

// hierarchyName names a cgroup hierarchy as /proc/self/cgroup does:
// "cgroup2", or a v1 hierarchy's controllers ("memory", "name=systemd").
func hierarchyName(id uint32, cgroup2 bool) string {
	if cgroup2 {
		return "cgroup2"
	}
	hierOnce.Do(loadHierarchies)
	if n, ok := hierNames[id]; ok {
		return n
	}
	return fmt.Sprintf("hierarchy %d", id)
}

var (
	hierOnce  sync.Once
	hierNames map[uint32]string
)

func loadHierarchies() {
	hierNames = map[uint32]string{}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return
	}
	for _, l := range procCgroupLines(string(b)) {
		var id uint32
		if _, err := fmt.Sscan(l.id, &id); err == nil && id != 0 {
			hierNames[id] = l.hierarchy
		}
	}
}

// CgroupMode describes how this node's cgroups are mounted, for probe:
// "unified (cgroup2)", "hybrid (v1 + cgroup2 at /sys/fs/cgroup/unified)"
// or "legacy (v1)".
func CgroupMode() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "unified (cgroup2 at /sys/fs/cgroup)"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
		return "hybrid (v1 hierarchies, cgroup2 at /sys/fs/cgroup/unified)"
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs"); len(m) > 0 {
		return "legacy (v1 hierarchies only)"
	}
	return "no cgroup file system mounted"
}

// podIndex is one refresh's view of the pod sources, never changed once
// published.
type podIndex struct {
	gen         uint64
	sourceNames string // "cri", "cri+kubernetes"
	containers  map[string]*event.Container
	byIP        map[netip.Addr]*event.Pod
	ips         []netip.Addr // sorted, for counting the pods in a prefix
	pods        int
	lastSnaps   []Snapshot // per source, kept for a source that fails next time
}

// countIn counts the pod addresses inside p.
func (x *podIndex) countIn(p netip.Prefix) int {
	p = p.Masked()
	lo := p.Addr()
	i, _ := slices.BinarySearchFunc(x.ips, lo, func(a, b netip.Addr) int { return a.Compare(b) })
	n := 0
	for ; i < len(x.ips) && p.Contains(x.ips[i]); i++ {
		n++
	}
	return n
}

func buildIndex(gen uint64, names string, snaps []Snapshot) *podIndex {
	x := &podIndex{gen: gen, sourceNames: names, containers: map[string]*event.Container{}, byIP: map[netip.Addr]*event.Pod{}}
	byUID := map[string]*event.Pod{}
	for _, s := range snaps {
		for _, p := range s.Pods {
			if prev, ok := byUID[p.UID]; ok && prev != nil {
				if len(prev.Labels) == 0 && len(p.Labels) > 0 {
					byUID[p.UID] = p
				}
				continue
			}
			byUID[p.UID] = p
		}
	}
	for _, s := range snaps {
		for _, c := range s.Containers {
			if _, ok := x.containers[c.ID]; ok {
				continue
			}
			if c.Pod != nil {
				if p := byUID[c.Pod.UID]; p != nil && p != c.Pod {
					cc := *c
					cc.Pod = p
					c = &cc
				}
			}
			x.containers[c.ID] = c
		}
	}
	for _, p := range byUID {
		x.pods++
		if p.HostNetwork {
			continue
		}
		for _, ip := range p.IPs {
			x.byIP[ip] = p
			x.ips = append(x.ips, ip)
		}
	}
	slices.SortFunc(x.ips, func(a, b netip.Addr) int { return a.Compare(b) })
	return x
}

// askRefresh asks the refresh loop for a listing now (it rate-limits).
func (e *Enricher) askRefresh() {
	select {
	case e.refreshCh <- struct{}{}:
	default:
	}
}

// waitRefresh returns a channel closed after the next refresh ends.
func (e *Enricher) waitRefresh() <-chan struct{} {
	e.refMu.Lock()
	defer e.refMu.Unlock()
	return e.refreshed
}

// Pod listings: at the start, every refreshEvery, and when an event names
// a container no source knows (at most once per minRefreshGap; after a
// failure the gap doubles up to refreshEvery).
const (
	refreshEvery   = 30 * time.Second
	minRefreshGap  = 500 * time.Millisecond
	refreshTimeout = 5 * time.Second
)

func (e *Enricher) refreshLoop(ctx context.Context) {
	if len(e.sources) == 0 {
		return
	}
	gap := minRefreshGap
	timer := time.NewTimer(0)
	defer timer.Stop()
	var gen uint64
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-e.refreshCh:
			if wait := gap - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		gen++
		ok := e.refresh(ctx, gen)
		if ok {
			gap = minRefreshGap
		} else if gap *= 2; gap > refreshEvery {
			gap = refreshEvery
		}
		timer.Reset(refreshEvery)
	}
}

// refresh lists every source and publishes a new index; a source that
// fails keeps its last answer.
func (e *Enricher) refresh(ctx context.Context, gen uint64) bool {
	ok := true
	var snaps []Snapshot
	var names []string
	prev := e.pods.Load()
	for i, s := range e.sources {
		lctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		if rn, ok := s.(interface {
			RuntimeName(context.Context) (string, error)
		}); ok && e.runtime.Load() == nil {
			if name, err := rn.RuntimeName(lctx); err == nil && name != "" {
				e.runtime.Store(&name)
			}
		}
		snap, err := s.List(lctx)
		cancel()
		names = append(names, s.Name())
		if err != nil {
			ok = false
			e.stats.RefreshErrs.Add(1)
			e.log.Warn("listing pods", "source", s.Name(), "err", err)
			if i < len(prev.lastSnaps) {
				snap = prev.lastSnaps[i]
			}
		}
		snaps = append(snaps, snap)
	}
	x := buildIndex(gen, strings.Join(names, "+"), snaps)
	x.lastSnaps = snaps
	e.pods.Store(x)
	e.stats.Refreshes.Add(1)
	e.refMu.Lock()
	close(e.refreshed)
	e.refreshed = make(chan struct{})
	e.refMu.Unlock()
	return ok
}

// ProcessForCgroup is what the enricher would say of a process in the
// cgroup at path (from the hierarchy's root): its unit, container and pod.
// The enforcer asks it of every cgroup on the node to find those an allow
// entry names, since the kernel judges requests by cgroup id, not by name.
func (e *Enricher) ProcessForCgroup(path string) *event.Process {
	info := ParseCgroup(path)
	p := &event.Process{Cgroup: path, CgroupHierarchy: "cgroup2", Unit: info.Unit, ContainerID: info.ContainerID,
		Runtime: info.Runtime, PodUID: info.PodUID, QoS: info.QoS}
	e.resolveContainer(p, e.pods.Load())
	return p
}
