package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/enforce"
	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/nodefacts"
	"github.com/routetrace/routetrace/policy"
)

// blockSupported is nil when BPF LSM programs load and attach here.
func blockSupported() error { return enforce.Probe() }

// releaseEnforcement is --release: the pinned programs and maps go, so the
// kernel refuses nothing any more.
func releaseEnforcement(c *cli.Context) error {
	if _, err := os.Stat(enforce.PinDir); os.IsNotExist(err) {
		fmt.Fprintf(os.Stderr, "enforce: nothing pinned in %s: no enforcement to release\n", enforce.PinDir)
		return nil
	}
	if err := enforce.ReleasePinned(""); err != nil {
		return fmt.Errorf("releasing the enforcement pinned in %s: %w", enforce.PinDir, err)
	}
	fmt.Fprintf(os.Stderr, "enforce: released: the programs pinned in %s are detached once no routetrace holds them "+
		"(a running `routetrace enforce` still does: stop it)\n", enforce.PinDir)
	return nil
}

// blockState is block mode's user space: the loaded enforcer and the
// facts the policy's names resolve to in each enforced namespace.
type blockState struct {
	e *enforce.Enforcer
	// policy is what the resolvers resolve: the new one as soon as a
	// reload starts, so a rescan running beside the reload cannot put
	// back the old policy's facts after it.
	policy    atomic.Pointer[policy.Policy]
	resolvers []*nodefacts.Resolver

	mu     sync.Mutex
	facts  map[uint32]nodefacts.Facts // by namespace
	routes map[routeKey]uint32        // what ProtectRoutes has put in: rule ids
	names  map[uint32][]string        // rule names by policy generation
}

// ruleName names a refusal's rule by the policy it was judged by.
func (b *blockState) ruleName(gen, rule uint32) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if names := b.names[gen]; int(rule) < len(names) {
		return names[rule]
	}
	return ""
}

// setupBlock loads the enforcer (adopting one left pinned), resolves the
// policy's names on the node, puts the policy in force and attaches: the
// kernel refuses from here on. Blocked requests are read into the
// pipeline once the tracer runs.
func setupBlock(c *cli.Context, j *judgeStage) error {
	e, err := enforce.Load(enforce.Options{Log: slog.Default()})
	if err != nil {
		return fmt.Errorf("loading the BPF LSM enforcer: %w", err)
	}
	b := &blockState{e: e, facts: map[uint32]nodefacts.Facts{}, routes: map[routeKey]uint32{}, names: map[uint32][]string{}}
	b.policy.Store(j.policy.Load())
	for _, path := range j.nsPaths {
		r, err := nodefacts.New(nodefacts.Options{Policy: b.policy.Load, Netns: path, Logger: slog.Default(),
			Process: func(cgroup string) *event.Process {
				if enr := j.enricher.Load(); enr != nil {
					return enr.ProcessForCgroup(cgroup)
				}
				return nil // before the enricher starts: the unit and container id from the path
			}})
		if err != nil {
			b.close()
			return fmt.Errorf("resolving the policy's names in %s: %w", path, err)
		}
		b.resolvers = append(b.resolvers, r)
	}
	var inodes []uint32
	for ino := range j.namespaces {
		inodes = append(inodes, ino)
	}
	if err := e.Maps.SetNamespaces(inodes); err != nil {
		b.close()
		return err
	}
	for _, r := range b.resolvers {
		f, err := r.Resolve()
		if err != nil {
			b.close()
			return fmt.Errorf("resolving the policy's names: %w", err)
		}
		if err := b.update(f); err != nil {
			b.close()
			return err
		}
	}
	if err := b.apply(j.policy.Load()); err != nil {
		b.close()
		return err
	}
	if err := e.Attach(); err != nil {
		b.close()
		return fmt.Errorf("attaching the BPF LSM enforcer: %w", err)
	}
	j.reloaded = func(p *policy.Policy) error {
		// The new policy goes in force with the facts of the old (the
		// union protects more than either), then its own facts replace
		// them: never a moment with less protection than both agree on.
		old := b.policy.Swap(p)
		var facts []nodefacts.Facts
		for _, r := range b.resolvers {
			f, err := r.ResolveFor(p)
			if err != nil {
				b.policy.Store(old)
				return fmt.Errorf("resolving the new policy's names: %w", err)
			}
			facts = append(facts, f)
		}
		if err := b.apply(p); err != nil {
			b.policy.Store(old)
			return err
		}
		for _, f := range facts {
			if err := b.update(f); err != nil {
				return err
			}
		}
		return nil
	}
	j.start = func(ctx context.Context, emit func(*event.Event)) error {
		go func() {
			if err := e.Run(ctx, b.ruleName, emit); err != nil {
				slog.Error("reading the enforcer's refusals", "err", err)
			}
		}()
		// Each resolver's first publish is now, with the enricher to name
		// the pods of the cgroups.
		for _, r := range b.resolvers {
			go func() {
				err := r.Run(ctx, 2*time.Second, nil, func(f nodefacts.Facts) {
					if err := b.update(f); err != nil {
						slog.Error("updating the enforcer's facts (the previous ones stay in force)", "netns", f.Netns, "err", err)
					}
				})
				if err != nil {
					slog.Error("following the node for the enforcer", "err", err)
				}
			}()
		}
		return nil
	}
	j.kernelSummary = func() string {
		st, err := e.Stats()
		if err != nil {
			return fmt.Sprintf("; kernel counters unreadable: %v", err)
		}
		return fmt.Sprintf("; in the kernel: %d requests judged, %d refused (%d fail-closed), %d refusals lost (ring full)",
			st.Checked, st.Blocked, st.FailClosed, st.Lost)
	}
	// Closing leaves the pinned programs attached: the kernel goes on
	// refusing with the policy in force (enforce --release ends it).
	j.closers = append(j.closers, func() {
		b.close()
		fmt.Fprintf(os.Stderr, "enforce: the kernel keeps refusing with this policy after routetrace exits "+
			"(pinned in %s); `routetrace enforce --release` ends it\n", enforce.PinDir)
	})
	return nil
}

func (b *blockState) close() {
	for _, r := range b.resolvers {
		r.Close()
	}
	b.e.Close()
}

// apply compiles a policy and puts it in force in one flip.
func (b *blockState) apply(p *policy.Policy) error {
	cp, err := enforce.Compile(p)
	if err != nil {
		return fmt.Errorf("compiling %s for the kernel: %w", p.Source, err)
	}
	// Named before the flip (Apply makes the next generation): a refusal
	// can come the moment it is done.
	b.mu.Lock()
	b.names[b.e.Maps.Generation()+1] = ruleNames(p)
	b.mu.Unlock()
	if err := b.e.Maps.Apply(cp); err != nil {
		return fmt.Errorf("putting %s in force: %w", p.Source, err)
	}
	return nil
}

// update merges one namespace's facts with the others' and gives the
// enforcer what changed.
func (b *blockState) update(f nodefacts.Facts) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.facts[f.Netns] = f
	var ifaces []enforce.Iface
	var exes []enforce.ExeID
	cgroups := map[uint64]bool{}
	want := map[routeKey]uint32{}
	for ns, nf := range b.facts {
		for _, it := range nf.Interfaces {
			ifaces = append(ifaces, enforce.Iface{Netns: ns, Ifindex: it.Ifindex, Rule: uint32(it.Rule)})
		}
		for _, rt := range nf.Routes {
			want[routeKey{ns, rt.Dst, rt.Table}] = uint32(rt.Rule)
		}
		for _, id := range nf.Cgroups {
			cgroups[id] = true
		}
		if len(exes) == 0 { // the same files in every namespace
			for _, x := range nf.Exes {
				exes = append(exes, enforce.ExeID{Dev: x.Dev, Ino: x.Ino})
			}
		}
	}
	// Keyed without the rule: a route whose protecting entry changed is
	// updated in place, never deleted and added again.
	var add, del []enforce.Route
	for k, rule := range want {
		if have, ok := b.routes[k]; !ok || have != rule {
			add = append(add, enforce.Route{Netns: k.netns, Dst: k.dst, Table: k.table, Rule: rule})
		}
	}
	for k, rule := range b.routes {
		if _, ok := want[k]; !ok {
			del = append(del, enforce.Route{Netns: k.netns, Dst: k.dst, Table: k.table, Rule: rule})
		}
	}
	ids := make([]uint64, 0, len(cgroups))
	for id := range cgroups {
		ids = append(ids, id)
	}
	m := b.e.Maps
	// Protection first, then what it no longer covers.
	if err := m.ProtectRoutes(add); err != nil {
		return err
	}
	if err := m.SetProtectedInterfaces(ifaces); err != nil {
		return err
	}
	if err := m.UnprotectRoutes(del); err != nil {
		return err
	}
	if err := m.SetAllowedCgroups(ids); err != nil {
		return err
	}
	if err := m.SetAllowedExes(exes); err != nil {
		return err
	}
	b.routes = want
	return nil
}

// routeKey is how the kernel side keys a protected route.
type routeKey struct {
	netns uint32
	dst   netip.Prefix
	table uint32
}

// ruleNames names the enforcer's rule ids: Protect[i] is rule i.
func ruleNames(p *policy.Policy) []string {
	names := make([]string, len(p.Protect))
	for i := range p.Protect {
		names[i] = p.Protect[i].String()
	}
	return names
}
