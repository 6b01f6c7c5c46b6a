package policy

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/event"
)

// ErrNoCNI is Auto's answer on a node where nothing looks like a CNI's.
var ErrNoCNI = errors.New("no CNI links or pod routes found: write the policy by hand (see README#enforce)")

// DefaultAgents are the command names of CNI agents, the owners of the
// state Auto protects.
var DefaultAgents = []string{
	"calico-node", "bird", "bird6", "confd", "felix", "cilium-agent",
	"flanneld", "aws-k8s-agent", "kube-router", "weaver",
}

// AutoOptions say where Auto looks.
type AutoOptions struct {
	// Handle reads links, routes and rules; nil opens one in the calling
	// thread's network namespace (lock the thread to choose another, or
	// pass netlink.NewHandleAt's).
	Handle *netlink.Handle
	// ProcRoot is where the processes are listed; "" is /proc.
	ProcRoot string
	// CNIConfDir is read for the configured CNI (enrich.ConfiguredCNI),
	// which claims interface names several plugins share (cni0, tunl0,
	// veth<hex>); "" is enrich.DefaultCNIDir.
	CNIConfDir string
	// Agents are the command names of CNI agents; nil is DefaultAgents.
	Agents []string
}

// Auto builds a policy from the node: its CNI links, the pod CIDRs in its
// routing tables, the rules that send traffic to tables of their own, and
// the CNI agents running as the owners allowed to change them. Each entry
// carries a Comment saying what it was made from, for the human who
// reviews Marshal's output before saving it. When nothing looks like a
// CNI's, the policy says so in its Comment and the error is ErrNoCNI.
func Auto(opts AutoOptions) (*Policy, error) {
	h := opts.Handle
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return nil, fmt.Errorf("opening netlink: %w", err)
		}
		defer h.Close()
	}
	p := &Policy{Source: "auto", Mode: ModeAuto, Operations: Operations{Replace: true}}
	var notes []string

	configured, err := enrich.ConfiguredCNI(opts.CNIConfDir)
	if err != nil {
		notes = append(notes, fmt.Sprintf("configured CNI unknown (%v): links named alike by several plugins are left out", err))
	}
	links, err := cniLinks(h, configured)
	if err != nil {
		return nil, err
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	prefixes := podPrefixes(routes, links)
	for _, pp := range prefixes {
		p.Protect = append(p.Protect, Protect{Prefix: pp.prefix, Comment: pp.comment()})
	}
	p.Protect = append(p.Protect, interfaceEntries(routes, links)...)
	rules, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	p.Protect = append(p.Protect, ruleEntries(rules)...)

	allow, err := agentEntries(opts)
	if err != nil {
		return nil, err
	}
	p.Allow = allow
	if len(allow) == 0 {
		notes = append(notes, "no CNI agent running ("+strings.Join(agentsOf(opts), ", ")+"): nobody is allowed; add the owner")
	}

	if len(links) == 0 && len(prefixes) == 0 {
		p.Comment = strings.Join(append([]string{
			"Nothing CNI-like was found here: no CNI links, no pod routes.",
			"Write the protect list by hand (see README#enforce).",
		}, notes...), "\n")
		p.label()
		return p, ErrNoCNI
	}
	p.Comment = strings.Join(append([]string{
		"Built by --policy auto from this node: review it before saving it.",
	}, notes...), "\n")
	p.label()
	return p, nil
}

func agentsOf(opts AutoOptions) []string {
	if opts.Agents != nil {
		return opts.Agents
	}
	return DefaultAgents
}

// cniLink is a link a CNI plugin made.
type cniLink struct {
	name, cni string
	glob      string // the pattern Auto protects it by: "cali*"
}

// cniLinks maps the CNI links of h's namespace by index.
func cniLinks(h *netlink.Handle, configured string) (map[int]cniLink, error) {
	list, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	out := map[int]cniLink{}
	for _, l := range list {
		a := l.Attrs()
		if cni := enrich.ClassifyLinkFor(configured, a.Name, l.Type()); cni != "" {
			out[a.Index] = cniLink{name: a.Name, cni: cni, glob: linkGlob(a.Name)}
		}
	}
	return out, nil
}

// Pod veth names are a plugin's prefix and a hash: one glob covers the
// pods to come. Other CNI links (vxlan.calico, cilium_host, cni0) are
// protected by their own name.
var podVethPrefixes = []string{"cali", "lxc", "eni", "vethwepl", "veth"}

func linkGlob(name string) string {
	for _, prefix := range podVethPrefixes {
		if rest, ok := strings.CutPrefix(name, prefix); ok && rest != "" && strings.Trim(rest, "0123456789abcdef") == "" {
			return prefix + "*"
		}
	}
	return escapeGlob(name)
}

// escapeGlob makes s a path.Match pattern matching s alone.
func escapeGlob(s string) string {
	if !hasMeta(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// podPrefix is a prefix Auto protects, and what it was made from.
type podPrefix struct {
	prefix netip.Prefix
	from   string // "blackhole 10.244.7.0/26 proto bird", "a route on cni0"
	pods   int    // host routes it covers
	globs  []string
}

func (pp *podPrefix) comment() string {
	var b strings.Builder
	if pp.from != "" {
		b.WriteString(pp.from)
	} else {
		b.WriteString("pod routes with no CNI block route covering them: their addresses exactly")
	}
	if pp.pods > 0 {
		fmt.Fprintf(&b, "; %d pod route%s on %s links", pp.pods, plural(pp.pods), strings.Join(pp.globs, ", "))
	}
	return b.String()
}

// podPrefixes finds the pod CIDRs: routes on CNI links, and the blackhole
// and unreachable routes CNIs install for their IPAM blocks (Calico's
// "blackhole 10.244.7.0/26 proto bird"). Host routes (a pod's /32 or
// /128) are folded into the block that covers them; those no block covers
// are merged only where no address outside them is added.
func podPrefixes(routes []netlink.Route, links map[int]cniLink) []*podPrefix {
	var blocks, hosts []*podPrefix
	for _, r := range routes {
		dst, ok := routeDst(r)
		if !ok || r.Table == unix.RT_TABLE_LOCAL {
			continue
		}
		var pp *podPrefix
		switch {
		case (r.Type == unix.RTN_BLACKHOLE || r.Type == unix.RTN_UNREACHABLE) &&
			(r.Protocol == unix.RTPROT_BIRD || r.Protocol == unix.RTPROT_STATIC):
			pp = &podPrefix{prefix: dst, from: fmt.Sprintf("%s %s proto %s (a CNI's IPAM block)",
				event.RouteTypeName(uint8(r.Type)), dst, event.ProtocolName(uint8(r.Protocol)))}
		case r.Type == unix.RTN_UNICAST:
			l, ok := routeLink(r, links)
			if !ok {
				continue
			}
			pp = &podPrefix{prefix: dst, globs: []string{l.glob}}
			if dst.IsSingleIP() {
				pp.pods = 1
			} else {
				pp.from = fmt.Sprintf("%s on %s (%s)", dst, l.name, l.cni)
			}
		default:
			continue
		}
		if dst.IsSingleIP() {
			hosts = append(hosts, pp)
		} else {
			blocks = append(blocks, pp)
		}
	}
	blocks = foldInto(blocks, blocks)
	hosts = foldInto(blocks, hosts)
	return sortPrefixes(append(blocks, mergeSiblings(hosts)...))
}

// foldInto folds each of from that lies inside a prefix of into (a
// different one) into the widest such, and returns those left, the same
// prefix listed twice (in two tables) made one.
func foldInto(into, from []*podPrefix) []*podPrefix {
	widest := slices.Clone(into)
	slices.SortStableFunc(widest, func(a, b *podPrefix) int { return cmp.Compare(a.prefix.Bits(), b.prefix.Bits()) })
	var left []*podPrefix
next:
	for _, f := range from {
		for _, b := range widest {
			if b.prefix != f.prefix && inside(f.prefix, b.prefix) {
				b.absorb(f)
				continue next
			}
		}
		for _, l := range left {
			if l.prefix == f.prefix {
				l.absorb(f)
				continue next
			}
		}
		left = append(left, f)
	}
	return left
}

func (pp *podPrefix) absorb(f *podPrefix) {
	pp.pods += f.pods
	for _, g := range f.globs {
		if !slices.Contains(pp.globs, g) {
			pp.globs = append(pp.globs, g)
		}
	}
	if pp.from == "" {
		pp.from = f.from
	}
}

// mergeSiblings joins two prefixes that are the halves of one, until none
// are: 10.244.9.4/32 and 10.244.9.5/32 make 10.244.9.4/31, which covers
// exactly those two addresses.
func mergeSiblings(ps []*podPrefix) []*podPrefix {
	for merged := true; merged; {
		merged = false
		sortPrefixes(ps)
		for i := 0; i+1 < len(ps); i++ {
			a, b := ps[i], ps[i+1]
			if a.prefix.Bits() == 0 || a.prefix.Bits() != b.prefix.Bits() {
				continue
			}
			parent := netip.PrefixFrom(a.prefix.Addr(), a.prefix.Bits()-1).Masked()
			if parent.Addr() != a.prefix.Addr() || !parent.Contains(b.prefix.Addr()) || a.prefix.Addr().Is4() != b.prefix.Addr().Is4() {
				continue
			}
			a.prefix = parent
			a.absorb(b)
			ps = slices.Delete(ps, i+1, i+2)
			merged = true
		}
	}
	return ps
}

func sortPrefixes(ps []*podPrefix) []*podPrefix {
	slices.SortFunc(ps, func(a, b *podPrefix) int {
		if c := cmp.Compare(a.prefix.Addr().BitLen(), b.prefix.Addr().BitLen()); c != 0 {
			return c
		}
		if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.prefix.Bits(), b.prefix.Bits())
	})
	return ps
}

// routeDst is a route's destination when it can be a pod CIDR: not the
// default route, link-local or multicast.
func routeDst(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	dst, ok := ipNetPrefix(r.Dst)
	if !ok || dst.Bits() == 0 || dst.Addr().IsLinkLocalUnicast() || dst.Addr().IsMulticast() {
		return netip.Prefix{}, false
	}
	return dst, true
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addr.Unmap(), ones).Masked(), true
}

// routeLink is the CNI link a route goes through, its own or one of its
// multipath hops'.
func routeLink(r netlink.Route, links map[int]cniLink) (cniLink, bool) {
	if l, ok := links[r.LinkIndex]; ok {
		return l, true
	}
	for _, hop := range r.MultiPath {
		if l, ok := links[hop.LinkIndex]; ok {
			return l, true
		}
	}
	return cniLink{}, false
}

// interfaceEntries protects each CNI link pattern.
func interfaceEntries(routes []netlink.Route, links map[int]cniLink) []Protect {
	type pattern struct {
		cni          string
		links, route int
	}
	byGlob := map[string]*pattern{}
	for _, l := range links {
		pt := byGlob[l.glob]
		if pt == nil {
			pt = &pattern{cni: l.cni}
			byGlob[l.glob] = pt
		}
		pt.links++
	}
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_LOCAL {
			continue
		}
		if _, ok := routeDst(r); !ok && r.Dst != nil {
			continue // link-local and multicast routes come with every link
		}
		if l, ok := routeLink(r, links); ok {
			byGlob[l.glob].route++
		}
	}
	var out []Protect
	for _, glob := range slices.Sorted(maps.Keys(byGlob)) {
		pt := byGlob[glob]
		out = append(out, Protect{Interface: glob, Comment: fmt.Sprintf("%d route%s on %s links (%s, %d link%s)",
			pt.route, plural(pt.route), glob, pt.cni, pt.links, plural(pt.links))})
	}
	return out
}

// ruleEntries protects the rules that look up tables of their own (AWS VPC
// CNI's per-ENI tables), one entry per table and family spanning their
// priorities, and those tables' routes.
func ruleEntries(rules []netlink.Rule) []Protect {
	type key struct {
		table  uint32
		family uint8
	}
	type group struct {
		lo, hi uint32
		n      int
	}
	groups := map[key]*group{}
	var keys []key
	for _, r := range rules {
		if r.Table <= 0 || r.Table == unix.RT_TABLE_DEFAULT || r.Table == unix.RT_TABLE_MAIN || r.Table == unix.RT_TABLE_LOCAL {
			continue
		}
		prio := uint32(max(r.Priority, 0))
		k := key{uint32(r.Table), uint8(r.Family)}
		g := groups[k]
		if g == nil {
			g = &group{lo: prio, hi: prio}
			groups[k] = g
			keys = append(keys, k)
		}
		g.lo, g.hi, g.n = min(g.lo, prio), max(g.hi, prio), g.n+1
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.family, b.family))
	})
	var out []Protect
	var tables []uint32
	for _, k := range keys {
		g := groups[k]
		out = append(out, Protect{
			Rule:    &RuleSelector{PriorityMin: g.lo, PriorityMax: g.hi, HasPriority: true, Table: k.table, Family: k.family},
			Comment: fmt.Sprintf("%d %s rule%s looking up table %d", g.n, event.FamilyName(k.family), plural(g.n), k.table),
		})
		if !slices.Contains(tables, k.table) {
			tables = append(tables, k.table)
		}
	}
	for _, t := range tables {
		out = append(out, Protect{Table: t, Comment: fmt.Sprintf("the routes of table %d, which the rules above look up", t)})
	}
	return out
}

// agentEntries allows each running CNI agent: by its systemd unit when it
// runs in one, else by its command name (an agent in a pod: its
// container's id changes with every restart).
func agentEntries(opts AutoOptions) ([]Allow, error) {
	root := cmp.Or(opts.ProcRoot, "/proc")
	agents := agentsOf(opts)
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Allow
	seen := map[Allow]int{} // entry → index in out
	pids := map[Allow][]string{}
	for _, d := range dirs {
		pid := d.Name()
		if _, err := strconv.ParseUint(pid, 10, 32); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, pid, "comm"))
		if err != nil {
			continue // gone since the listing
		}
		comm := strings.TrimSuffix(string(b), "\n")
		if !slices.Contains(agents, comm) {
			continue
		}
		a := Allow{Comm: escapeGlob(comm)}
		where := "runs outside a systemd unit"
		if unit := processUnit(filepath.Join(root, pid, "cgroup")); unit != "" {
			a = Allow{Unit: escapeGlob(unit)}
			where = "runs in " + unit
		}
		if _, ok := seen[a]; !ok {
			seen[a] = len(out)
			out = append(out, a)
		}
		pids[a] = append(pids[a], comm+" (pid "+pid+") "+where)
	}
	for i := range out {
		out[i].Comment = "CNI agent: " + strings.Join(pids[out[i]], "; ")
	}
	return out, nil
}

// processUnit is the systemd unit of a process from its /proc/PID/cgroup
// (cgroup2's line, else name=systemd's): "" when it runs in none of its
// own (a container, a login session, init.scope).
func processUnit(cgroupFile string) string {
	b, err := os.ReadFile(cgroupFile)
	if err != nil {
		return ""
	}
	var unified, systemd string // the cgroup2 line's unit, name=systemd's
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			unified = enrich.ParseCgroup(parts[2]).Unit
		case parts[1] == "name=systemd":
			systemd = enrich.ParseCgroup(parts[2]).Unit
		}
	}
	unit := cmp.Or(unified, systemd)
	if unit == "init.scope" || strings.HasPrefix(unit, "session-") && strings.HasSuffix(unit, ".scope") {
		return "" // not the agent's own: allowing it would allow a whole login session
	}
	return unit
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
