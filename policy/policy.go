// Package policy is routetrace's enforcement policy: which routing state is
// protected, who may still change it, and which operations count. It reads
// the YAML file (naming file, line and field of every error), matches
// changes in Go (audit and repair decide here; the BPF enforcer's matcher
// is checked against this one), and builds a policy from the node
// (--policy auto).
//
// The semantics, in one place:
//   - A change is protected when its object matches any Protect entry:
//     a route inside Prefix (dst within it, prefix length at least its
//     own; any table), a route whose device matches Interface (a glob on
//     the name), a route in Table, a route of Protocol, a rule matching
//     Rule (every given field), a nexthop matching Nexthop.
//   - Deletions of protected state always count; replacements count when
//     Operations.Replace (default true); adding a route inside a protected
//     prefix that is more specific than an existing protected route counts
//     when Operations.MoreSpecific (default false: CNIs add pod routes
//     inside their own pod CIDR all the time).
//   - A counted change by an actor matching any Allow entry is allowed;
//     otherwise its verdict is would-block (audit), blocked (block) or
//     repaired (repair).
//   - Kernel-internal removals (a link deleted, an address removed, a
//     namespace torn down) cannot be refused; they are judged by the actor
//     of their cause.
package policy

import "net/netip"

// Mode is how a policy is enforced.
type Mode string

const (
	// ModeAuto: block where BPF LSM is active, else repair.
	ModeAuto   Mode = "auto"
	ModeAudit  Mode = "audit"
	ModeBlock  Mode = "block"
	ModeRepair Mode = "repair"
)

// Policy is one parsed, validated policy file.
type Policy struct {
	// Source is the file it was read from ("auto" when built from the
	// node), used in every message that names an entry.
	Source     string
	Mode       Mode // ModeAuto when the file does not say
	Protect    []Protect
	Allow      []Allow
	Operations Operations
}

// Operations says which operations on protected state count.
type Operations struct {
	Replace      bool // replacing a protected route, rule or nexthop (default true)
	MoreSpecific bool // adding a more specific route inside a protected prefix (default false)
}

// Where is the position of an entry in its file, for messages.
type Where struct {
	File string
	Line int
}

// Protect is one protect entry: exactly one of its selectors is set.
type Protect struct {
	At          Where
	Index       int          // temporary
	Prefix      netip.Prefix // masked; every route inside it, any table
	Interface   string       // glob on the route's device name: "cali*", "cilium_*"
	Table       uint32       // every route in this table (0: not set)
	Protocol    uint8        // every route of this protocol; HasProtocol says it is set
	HasProtocol bool
	Rule        *RuleSelector
	Nexthop     *NexthopSelector
}

// RuleSelector protects rules matching every field it sets.
type RuleSelector struct {
	PriorityMin, PriorityMax uint32 // inclusive; both 0 and HasPriority false: any
	HasPriority              bool
	Table                    uint32 // 0: any
	Family                   uint8  // 0: both
}

// NexthopSelector protects nexthop objects by id range, or every group.
type NexthopSelector struct {
	IDMin, IDMax uint32 // inclusive; 0, 0: any id
	Groups       bool   // only nexthop groups
}

// Allow is one allow entry: exactly one of its selectors is set. Globs
// follow path.Match.
type Allow struct {
	At        Where
	Index     int    // temporary
	Unit      string // systemd unit, glob: "calico-node.service"
	Pod       string // NAMESPACE/NAME glob: "kube-system/calico-node-*"
	Container string // container name glob, or id (12+ hex digits, prefix)
	Cgroup    string // cgroup path glob from the hierarchy's root: "/kubepods.slice/*"
	Comm      string // the kernel's command name (15 bytes at most), glob
	Exe       string // executable path, glob: "/usr/sbin/bird"
}
