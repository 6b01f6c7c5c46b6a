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
//
// What the Go matcher (Judge) decides, in detail, for the BPF enforcer and
// repair to agree with:
//   - Routes: the destination is ev.Dst; the device is ev.Dev, or
//     ev.Victim.Link.Name when the tracer did not name it; table 0 is main
//     (254). A flush (OpFlush: a table and a count) matches Table entries,
//     and Interface entries when its device is known; it has no
//     destination or protocol, so Prefix and Protocol entries never match
//     it.
//   - Rules: priority within the range, Table equal (a rule event with
//     table 0, a delete naming no table, matches any Table: the kernel
//     deletes the first rule that matches what the request gives), Family
//     equal. Unset selector fields match anything.
//   - Nexthops: id within the range (0, 0: any), and with Groups only
//     groups (ev.Multipath).
//   - The first entry in file order that matches and counts is the one
//     named in Enforcement.Rule; a change that matches but does not count
//     names the first entry it matches, with Counted false.
//   - Counting: OpDelete and OpFlush always; OpReplace with
//     Operations.Replace; OpAdd only with Operations.MoreSpecific and only
//     through a Prefix entry (dst inside the prefix, as long or longer:
//     the Go side cannot know which routes exist, so an equal prefix in
//     another table or with another metric counts too); rules and
//     nexthops added never count; OpUnknown never. A change that failed
//     (ev.Errno != 0) never counts: nothing changed (the enforcer's own
//     refusals carry their verdict from the kernel side, and Apply keeps
//     a verdict already set).
//   - The actor is ev.Actor, or for a kernel-internal change (Origin
//     kernel, or an actor that is the kernel) the actor of ev.Cause when
//     it is valid. A kernel-internal change without a cause, a kernel
//     actor and an actor the tracer did not capture are never allowed.
//   - Allow entries match the actor's enrichment (event.Process): unit,
//     pod (the actor's own, never the victim's), container, cgroup and
//     exe with event.Filter's glob semantics (a pod glob without "/"
//     matches any namespace; a container id prefix of 12 or more hex
//     digits matches); comm is a glob on the kernel's command name. An
//     actor not enriched (Process nil) can match only comm entries.
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
	// Comment is written by Marshal at the top of the file (Auto's account
	// of what it found); Parse does not read comments back.
	Comment string
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
	At Where
	// Index is the entry's position in the protect list: the number in
	// String() and the rule id the BPF enforcer reports.
	Index int
	// Comment is written by Marshal above the entry (why Auto made it).
	Comment     string
	Prefix      netip.Prefix // masked; every route inside it, any table
	Interface   string       // glob on the route's device name: "cali*", "cilium_*"
	Table       uint32       // every route in this table (0: not set)
	Protocol    uint8        // every route of this protocol; HasProtocol says it is set
	HasProtocol bool
	Rule        *RuleSelector
	Nexthop     *NexthopSelector

	// label is String(), made once by Parse and Auto so that naming the
	// entry in Enforcement.Rule allocates nothing.
	label string
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
	Index     int    // its position in the allow list
	Comment   string // written by Marshal above the entry
	Unit      string // systemd unit, glob: "calico-node.service"
	Pod       string // NAMESPACE/NAME glob: "kube-system/calico-node-*"
	Container string // container name glob, or id (12+ hex digits, prefix)
	Cgroup    string // cgroup path glob from the hierarchy's root: "/kubepods.slice/*"
	Comm      string // the kernel's command name (15 bytes at most), glob
	Exe       string // executable path, glob: "/usr/sbin/bird"
}
