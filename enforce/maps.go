package enforce

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The policy maps of enforce.bpf.c (bpf/include/policy.h says what each
// holds). Every key carries a set, 0 or 1; enf_current names the set in
// force.
type policyMaps struct {
	Current      *ebpf.Map `ebpf:"enf_current"`
	Configs      *ebpf.Map `ebpf:"enf_configs"`
	Prefix4      *ebpf.Map `ebpf:"enf_prefix4"`
	Prefix6      *ebpf.Map `ebpf:"enf_prefix6"`
	Routes       *ebpf.Map `ebpf:"enf_routes"`
	Tables       *ebpf.Map `ebpf:"enf_tables"`
	Ifaces       *ebpf.Map `ebpf:"enf_ifaces"`
	Protocols    *ebpf.Map `ebpf:"enf_protocols"`
	Rules        *ebpf.Map `ebpf:"enf_rules"`
	Nexthops     *ebpf.Map `ebpf:"enf_nexthops"`
	Netns        *ebpf.Map `ebpf:"enf_netns"`
	AllowCgroups *ebpf.Map `ebpf:"enf_allow_cgroups"`
	AllowComms   *ebpf.Map `ebpf:"enf_allow_comms"`
	AllowExes    *ebpf.Map `ebpf:"enf_allow_exes"`
}

func (m *policyMaps) all() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"enf_current": m.Current, "enf_configs": m.Configs, "enf_prefix4": m.Prefix4, "enf_prefix6": m.Prefix6,
		"enf_routes": m.Routes, "enf_tables": m.Tables, "enf_ifaces": m.Ifaces, "enf_protocols": m.Protocols,
		"enf_rules": m.Rules, "enf_nexthops": m.Nexthops, "enf_netns": m.Netns,
		"enf_allow_cgroups": m.AllowCgroups, "enf_allow_comms": m.AllowComms, "enf_allow_exes": m.AllowExes,
	}
}

// Route is an existing protected route (found in a dump or a
// notification): deletes name routes only by what they carry, so the
// enforcer looks them up here for protection by interface, protocol or
// table. Table 0 is main.
type Route struct {
	Netns uint32
	Dst   netip.Prefix
	Table uint32
	Rule  uint32
}

// Iface is a protected interface, by namespace and index.
type Iface struct {
	Netns   uint32
	Ifindex uint32
	Rule    uint32
}

// ExeID is an executable's identity as stat(2) gives it.
type ExeID struct {
	Dev uint64 // st_dev
	Ino uint64
}

// Facts is what the enforcer judges by: the compiled policy and what user
// space resolved on the node. The reference matcher reads the same.
type Facts struct {
	Policy     *Compiled
	Namespaces map[uint32]bool // enforced network namespaces (inode numbers)
	Cgroups    map[uint64]bool // allowed cgroup v2 ids (the actor's or an ancestor's)
	Exes       map[ExeID]bool  // allowed executables
	Ifaces     map[[2]uint32]uint32
	Routes     map[routeID]uint32
}

type routeID struct {
	netns, table uint32
	dst          netip.Prefix
}

func newFacts() Facts {
	return Facts{Policy: &Compiled{}, Namespaces: map[uint32]bool{}, Cgroups: map[uint64]bool{},
		Exes: map[ExeID]bool{}, Ifaces: map[[2]uint32]uint32{}, Routes: map[routeID]uint32{}}
}

func normTable(t uint32) uint32 {
	if t == 0 {
		return unix.RT_TABLE_MAIN
	}
	return t
}

func (r Route) id() routeID {
	return routeID{netns: r.Netns, table: normTable(r.Table), dst: r.Dst.Masked()}
}

// Maps writes facts into the enforcer's maps. A policy change (Apply) is
// written to the set not in force and made current with one write, so no
// request is ever judged by a half-written policy or by none; the sets'
// keys say which set they belong to. The dynamic facts are changed in the
// set in force, in the order that is never more permissive than either the
// old or the new facts: protection added before it is removed, allowances
// removed before they are added. Safe for concurrent use.
type Maps struct {
	mu    sync.Mutex
	m     *policyMaps
	set   uint32
	facts Facts
	log   *slog.Logger
	// clean[s]: set s holds nothing (cleared after its last flip away).
	// Unknown, so false, for the sets of adopted maps.
	clean [2]bool
	// noWait skips the wait for readers of the old set: for tests that
	// apply thousands of policies with nothing else running the programs.
	noWait bool
	// applied: a policy of ours is in force. Until then the dynamic
	// setters only stage their facts, and the set in force (an adopted
	// pinned policy, or none) is left alone: Apply writes them all.
	applied bool
	// grace, once made: an array of maps whose update waits for an RCU
	// grace period (waitReaders), and the inner map it is updated with.
	grace, graceInner *ebpf.Map
}

func newMaps(m *policyMaps, log *slog.Logger) (*Maps, error) {
	var set uint32
	if err := m.Current.Lookup(uint32(0), &set); err != nil {
		return nil, fmt.Errorf("reading enf_current: %w", err)
	}
	var cfg enforceEnfConfig
	if err := m.Configs.Lookup(set&1, &cfg); err != nil {
		return nil, fmt.Errorf("reading enf_configs: %w", err)
	}
	mp := &Maps{m: m, set: set & 1, facts: newFacts(), log: log}
	// an adopted policy's generations go on, so verdicts stay ordered
	mp.facts.Policy.Generation = cfg.Generation
	return mp, nil
}

// Generation is the generation of the policy in force.
func (m *Maps) Generation() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.facts.Policy.Generation
}

// Facts returns a copy of the facts in force, for the reference matcher.
func (m *Maps) Facts() Facts {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := newFacts()
	p := *m.facts.Policy
	f.Policy = &p
	for k, v := range m.facts.Namespaces {
		f.Namespaces[k] = v
	}
	for k, v := range m.facts.Cgroups {
		f.Cgroups[k] = v
	}
	for k, v := range m.facts.Exes {
		f.Exes[k] = v
	}
	for k, v := range m.facts.Ifaces {
		f.Ifaces[k] = v
	}
	for k, v := range m.facts.Routes {
		f.Routes[k] = v
	}
	return f
}

// Apply makes c the policy in force, with the dynamic facts set so far:
// it fills the other set, flips enf_current, waits until no program can
// still be judging with the old set, and clears it.
func (m *Maps) Apply(c *Compiled) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.set ^ 1
	cc := *c
	cc.Generation = m.facts.Policy.Generation + 1
	if !m.clean[next] {
		if err := m.clearSet(next); err != nil {
			return err
		}
	}
	m.clean[next] = false
	f := m.facts
	f.Policy = &cc
	if err := m.writeSet(next, &f); err != nil {
		return err
	}
	if err := m.m.Current.Update(uint32(0), next, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("flipping enf_current to set %d: %w", next, err)
	}
	old := m.set
	m.set = next
	m.facts.Policy = &cc
	m.applied = true
	if !m.noWait {
		m.waitReaders()
	}
	if err := m.clearSet(old); err != nil {
		return err
	}
	m.clean[old] = true
	return nil
}

// waitReaders returns once every BPF program that may have read the old
// enf_current has returned. The programs run under RCU, and the kernel
// promises that an update of an array of maps returns after a grace period
// (maybe_wait_bpf_programs: "userspace, when we return to it, knows that
// all programs that could be running use the new map value"). It used
// membarrier(MEMBARRIER_CMD_GLOBAL), which skips the grace period on a
// machine with one CPU: on 7.2 (lazy preemption, so preemptible RCU
// readers) a program preempted while judging a request with the old set
// read it after Apply had cleared it, and a protected delete passed
// (TestLSMEnforce, a one-CPU guest).
func (m *Maps) waitReaders() {
	if err := m.waitGrace(); err != nil {
		// A program judges one request in microseconds to milliseconds.
		m.log.Warn("cannot wait for an RCU grace period; waiting a second instead", "error", err)
		time.Sleep(time.Second)
	}
}

func (m *Maps) waitGrace() error {
	if m.grace == nil {
		inner := &ebpf.MapSpec{Name: "enf_grace_inner", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
		in, err := ebpf.NewMap(inner)
		if err != nil {
			return fmt.Errorf("creating the grace-period map's inner map: %w", err)
		}
		outer, err := ebpf.NewMap(&ebpf.MapSpec{Name: "enf_grace", Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: inner})
		if err != nil {
			in.Close()
			return fmt.Errorf("creating the grace-period map: %w", err)
		}
		m.grace, m.graceInner = outer, in
	}
	if err := m.grace.Update(uint32(0), m.graceInner, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("updating the grace-period map: %w", err)
	}
	return nil
}

// close frees what the Maps made for themselves (not the policy maps,
// which the enforcer's objects own).
func (m *Maps) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.grace != nil {
		m.grace.Close()
		m.graceInner.Close()
		m.grace, m.graceInner = nil, nil
	}
}

func (m *Maps) writeSet(set uint32, f *Facts) error {
	c := f.Policy
	cfg := enforceEnfConfig{Generation: c.Generation, N_rules: uint32(len(c.Rules)), N_nexthops: uint32(len(c.Nexthops)),
		Replace: b2u(c.Replace), MoreSpecific: b2u(c.MoreSpecific)}
	var errs []error
	put := func(name string, mp *ebpf.Map, k, v any) {
		if err := mp.Update(k, v, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("writing %s: %w", name, err))
		}
	}
	for _, p := range c.Prefixes {
		v := enforceEnfPrefix{Rule: p.Rule, Len: uint32(p.Prefix.Bits())}
		if p.Prefix.Addr().Is4() {
			k := enforceEnfLpm4Key{Prefixlen: 8 + uint32(p.Prefix.Bits()), Set: uint8(set), Addr: p.Prefix.Addr().As4()}
			put("enf_prefix4", m.m.Prefix4, &k, &v)
		} else {
			k := enforceEnfLpm6Key{Prefixlen: 8 + uint32(p.Prefix.Bits()), Set: uint8(set), Addr: p.Prefix.Addr().As16()}
			put("enf_prefix6", m.m.Prefix6, &k, &v)
		}
	}
	for t, id := range c.Tables {
		put("enf_tables", m.m.Tables, &enforceEnfTableKey{Table: normTable(t), Set: set}, id)
	}
	for p, id := range c.Protocols {
		put("enf_protocols", m.m.Protocols, set*256+uint32(p), id+1)
	}
	for i, r := range c.Rules {
		v := enforceEnfRuleSel{PrioMin: r.PriorityMin, PrioMax: r.PriorityMax, Table: r.Table, Rule: r.Rule,
			Family: r.Family, HasPrio: b2u(r.HasPriority)}
		put("enf_rules", m.m.Rules, set*MaxRuleSelectors+uint32(i), &v)
	}
	for i, n := range c.Nexthops {
		v := enforceEnfNhSel{IdMin: n.IDMin, IdMax: n.IDMax, Rule: n.Rule, Groups: b2u(n.Groups)}
		put("enf_nexthops", m.m.Nexthops, set*MaxNexthopSelectors+uint32(i), &v)
	}
	for _, comm := range c.Comms {
		put("enf_allow_comms", m.m.AllowComms, commKey(comm, set), uint8(1))
	}
	for ns := range f.Namespaces {
		put("enf_netns", m.m.Netns, &enforceEnfNetnsKey{Netns: ns, Set: set}, uint8(1))
	}
	for id := range f.Cgroups {
		put("enf_allow_cgroups", m.m.AllowCgroups, &enforceEnfCgroupKey{Id: id, Set: uint64(set)}, uint8(1))
	}
	for x := range f.Exes {
		put("enf_allow_exes", m.m.AllowExes, exeKey(x, set), uint8(1))
	}
	for k, id := range f.Ifaces {
		put("enf_ifaces", m.m.Ifaces, &enforceEnfIfaceKey{Netns: k[0], Ifindex: k[1], Set: set}, id)
	}
	for r, id := range f.Routes {
		put("enf_routes", m.m.Routes, routeKey(r, set), id)
	}
	// the config last: a set is complete before anything reads it
	put("enf_configs", m.m.Configs, set, &cfg)
	return errors.Join(errs...)
}

// clearSet deletes every entry of set and zeroes its array slots.
func (m *Maps) clearSet(set uint32) error {
	var errs []error
	clearHash := func(name string, mp *ebpf.Map, newKey func() any) {
		var keys []any
		it := mp.Iterate()
		k := newKey()
		var v []byte
		for it.Next(k, &v) {
			if k.(interface{ setOf() uint32 }).setOf() == set {
				keys = append(keys, k)
				k = newKey()
			}
		}
		if err := it.Err(); err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", name, err))
		}
		for _, k := range keys {
			if err := mp.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("clearing %s: %w", name, err))
			}
		}
	}
	clearHash("enf_prefix4", m.m.Prefix4, func() any { return &enforceEnfLpm4Key{} })
	clearHash("enf_prefix6", m.m.Prefix6, func() any { return &enforceEnfLpm6Key{} })
	clearHash("enf_routes", m.m.Routes, func() any { return &enforceEnfRouteKey{} })
	clearHash("enf_tables", m.m.Tables, func() any { return &enforceEnfTableKey{} })
	clearHash("enf_ifaces", m.m.Ifaces, func() any { return &enforceEnfIfaceKey{} })
	clearHash("enf_netns", m.m.Netns, func() any { return &enforceEnfNetnsKey{} })
	clearHash("enf_allow_cgroups", m.m.AllowCgroups, func() any { return &enforceEnfCgroupKey{} })
	clearHash("enf_allow_comms", m.m.AllowComms, func() any { return &enforceEnfCommKey{} })
	clearHash("enf_allow_exes", m.m.AllowExes, func() any { return &enforceEnfExeKey{} })
	errs = append(errs,
		zeroSlots("enf_protocols", m.m.Protocols, set, 256, uint32(0)),
		zeroSlots("enf_rules", m.m.Rules, set, MaxRuleSelectors, enforceEnfRuleSel{}),
		zeroSlots("enf_nexthops", m.m.Nexthops, set, MaxNexthopSelectors, enforceEnfNhSel{}))
	if err := m.m.Configs.Update(set, &enforceEnfConfig{}, ebpf.UpdateAny); err != nil {
		errs = append(errs, fmt.Errorf("clearing enf_configs: %w", err))
	}
	return errors.Join(errs...)
}

// zeroSlots zeroes the n array slots of set, in one batch where the
// kernel has batch updates.
func zeroSlots[V any](name string, mp *ebpf.Map, set, n uint32, zero V) error {
	keys := make([]uint32, n)
	vals := make([]V, n)
	for i := range keys {
		keys[i] = set*n + uint32(i)
		vals[i] = zero
	}
	if _, err := mp.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("clearing %s: %w", name, err)
	}
	for i := range keys {
		if err := mp.Update(keys[i], &vals[i], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("clearing %s: %w", name, err)
		}
	}
	return nil
}

func (k *enforceEnfLpm4Key) setOf() uint32   { return uint32(k.Set) }
func (k *enforceEnfLpm6Key) setOf() uint32   { return uint32(k.Set) }
func (k *enforceEnfRouteKey) setOf() uint32  { return uint32(k.Set) }
func (k *enforceEnfTableKey) setOf() uint32  { return k.Set }
func (k *enforceEnfIfaceKey) setOf() uint32  { return k.Set }
func (k *enforceEnfNetnsKey) setOf() uint32  { return k.Set }
func (k *enforceEnfCgroupKey) setOf() uint32 { return uint32(k.Set) }
func (k *enforceEnfCommKey) setOf() uint32   { return k.Set }
func (k *enforceEnfExeKey) setOf() uint32    { return k.Set }

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func commKey(comm string, set uint32) *enforceEnfCommKey {
	k := &enforceEnfCommKey{Set: set}
	for i := 0; i < len(comm) && i < 15; i++ {
		k.Comm[i] = int8(comm[i])
	}
	return k
}

// exeKey turns stat's st_dev into the kernel's s_dev (major << 20 | minor).
func exeKey(x ExeID, set uint32) *enforceEnfExeKey {
	return &enforceEnfExeKey{Ino: x.Ino, Dev: unix.Major(x.Dev)<<20 | unix.Minor(x.Dev), Set: set}
}

func routeKey(r routeID, set uint32) *enforceEnfRouteKey {
	k := &enforceEnfRouteKey{Netns: r.netns, Table: r.table, Set: uint8(set), DstLen: uint8(r.dst.Bits())}
	if r.dst.Addr().Is4() {
		k.Family = unix.AF_INET
		a := r.dst.Addr().As4()
		copy(k.Dst[:], a[:])
	} else {
		k.Family = unix.AF_INET6
		k.Dst = r.dst.Addr().As16()
	}
	return k
}

// syncSet makes the set in force hold want instead of have for one kind
// of fact: add runs before del when adding first is never more permissive
// (protection), del before add otherwise (allowances). Before the first
// Apply it writes nothing (see Maps.applied).
func syncSet[K comparable, V comparable](applied bool, have, want map[K]V, addFirst bool, add func(K, V) error, del func(K) error) error {
	var errs []error
	if !applied {
		return nil
	}
	adds := func() {
		for k, v := range want {
			if hv, ok := have[k]; !ok || hv != v {
				errs = append(errs, add(k, v))
			}
		}
	}
	dels := func() {
		for k := range have {
			if _, ok := want[k]; !ok {
				if err := del(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	if addFirst {
		adds()
		dels()
	} else {
		dels()
		adds()
	}
	return errors.Join(errs...)
}

// setPresence makes the map mp's keys of the set in force list, for a
// fact that is a set of keys (value 1); have is the fact in m.facts.
func setPresence[K comparable](m *Maps, what string, have *map[K]bool, list []K, addFirst bool, mp *ebpf.Map, key func(K, uint32) any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[K]bool{}
	for _, k := range list {
		want[k] = true
	}
	err := syncSet(m.applied, *have, want, addFirst,
		func(k K, _ bool) error { return mp.Update(key(k, m.set), uint8(1), ebpf.UpdateAny) },
		func(k K) error { return mp.Delete(key(k, m.set)) })
	*have = want
	return wrap(what, err)
}

// SetNamespaces sets the enforced network namespaces (inode numbers);
// requests on sockets of other namespaces pass. Added before removed: more
// enforcement is never more permissive.
func (m *Maps) SetNamespaces(inodes []uint32) error {
	return setPresence(m, "setting namespaces", &m.facts.Namespaces, inodes, true, m.m.Netns,
		func(n, set uint32) any { return &enforceEnfNetnsKey{Netns: n, Set: set} })
}

// SetAllowedCgroups sets the allowed cgroup v2 ids: an actor in one of
// them, or below one (ENF_CGROUP_DEPTH levels), is allowed. Removed before
// added: a moment with fewer allowances is never more permissive.
func (m *Maps) SetAllowedCgroups(ids []uint64) error {
	return setPresence(m, "setting allowed cgroups", &m.facts.Cgroups, ids, false, m.m.AllowCgroups,
		func(id uint64, set uint32) any { return &enforceEnfCgroupKey{Id: id, Set: uint64(set)} })
}

// SetAllowedExes sets the allowed executables (removed before added).
func (m *Maps) SetAllowedExes(exes []ExeID) error {
	return setPresence(m, "setting allowed executables", &m.facts.Exes, exes, false, m.m.AllowExes,
		func(x ExeID, set uint32) any { return exeKey(x, set) })
}

// SetProtectedInterfaces sets the protected interfaces. Each namespace
// with one also gets the marker {netns, 0}: link requests there that name
// their link only by name are refused.
func (m *Maps) SetProtectedInterfaces(ifaces []Iface) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[[2]uint32]uint32{}
	for _, i := range ifaces {
		if _, ok := want[[2]uint32{i.Netns, i.Ifindex}]; !ok {
			want[[2]uint32{i.Netns, i.Ifindex}] = i.Rule
		}
		if _, ok := want[[2]uint32{i.Netns, 0}]; !ok {
			want[[2]uint32{i.Netns, 0}] = i.Rule
		}
	}
	err := syncSet(m.applied, m.facts.Ifaces, want, true,
		func(k [2]uint32, rule uint32) error {
			return m.m.Ifaces.Update(&enforceEnfIfaceKey{Netns: k[0], Ifindex: k[1], Set: m.set}, rule, ebpf.UpdateAny)
		},
		func(k [2]uint32) error {
			return m.m.Ifaces.Delete(&enforceEnfIfaceKey{Netns: k[0], Ifindex: k[1], Set: m.set})
		})
	m.facts.Ifaces = want
	return wrap("setting protected interfaces", err)
}

// ProtectRoutes adds existing protected routes.
func (m *Maps) ProtectRoutes(routes []Route) error {
	return m.eachRoute("protecting routes", routes, func(r Route, id routeID) error {
		m.facts.Routes[id] = r.Rule
		if !m.applied {
			return nil
		}
		return m.m.Routes.Update(routeKey(id, m.set), r.Rule, ebpf.UpdateAny)
	})
}

// UnprotectRoutes removes routes that are gone (Rule is not looked at).
func (m *Maps) UnprotectRoutes(routes []Route) error {
	return m.eachRoute("unprotecting routes", routes, func(_ Route, id routeID) error {
		delete(m.facts.Routes, id)
		if !m.applied {
			return nil
		}
		if err := m.m.Routes.Delete(routeKey(id, m.set)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	})
}

func (m *Maps) eachRoute(what string, routes []Route, do func(Route, routeID) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, r := range routes {
		if !r.Dst.IsValid() {
			errs = append(errs, fmt.Errorf("route without a destination: %+v", r))
			continue
		}
		errs = append(errs, do(r, r.id()))
	}
	return wrap(what, errors.Join(errs...))
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
