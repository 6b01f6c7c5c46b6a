package enforce

import (
	"fmt"
	"net/netip"
	"path"
	"slices"

	"github.com/routetrace/routetrace/policy"
)

// Limits of the BPF matcher (bpf/include/policy.h).
const (
	MaxRuleSelectors    = 32 // ENF_MAX_RULES
	MaxNexthopSelectors = 32 // ENF_MAX_NEXTHOPS
)

// NoRule is the rule id of a fail-closed refusal that matched no entry.
const NoRule = 0xffffffff

// Compiled is the part of a policy the BPF maps hold as it is: everything
// but the facts user space resolves on the node (interfaces, existing
// routes, cgroups, executables, namespaces). Rule ids are indexes into
// Policy.Protect.
type Compiled struct {
	Generation   uint32 // set by Maps.Apply
	Replace      bool
	MoreSpecific bool
	Prefixes     []Prefix
	Tables       map[uint32]uint32 // table → rule id
	Protocols    map[uint8]uint32  // protocol → rule id
	Rules        []RuleSelector
	Nexthops     []NexthopSelector
	Comms        []string // exact comm names allowed
}

// Prefix is a protected prefix and its rule id.
type Prefix struct {
	Prefix netip.Prefix
	Rule   uint32
}

// RuleSelector is policy.RuleSelector with its rule id.
type RuleSelector struct {
	policy.RuleSelector
	Rule uint32
}

// NexthopSelector is policy.NexthopSelector with its rule id.
type NexthopSelector struct {
	policy.NexthopSelector
	Rule uint32
}

// Compile turns the policy's protect and allow entries into what the BPF
// matcher holds. The first entry of a kind wins a key (a table named
// twice keeps the first rule id), as the first matching entry names a
// change in package policy. Interface, unit, pod, container, cgroup and
// exe entries are not compiled: they are facts the caller resolves and
// passes to Maps (SetProtectedInterfaces, SetAllowedCgroups, ...). Comm
// entries must be exact names: BPF looks comms up in a hash.
func Compile(p *policy.Policy) (*Compiled, error) {
	c := &Compiled{
		Replace:      p.Operations.Replace,
		MoreSpecific: p.Operations.MoreSpecific,
		Tables:       map[uint32]uint32{},
		Protocols:    map[uint8]uint32{},
	}
	for i, pr := range p.Protect {
		id := uint32(i)
		switch {
		case pr.Prefix.IsValid():
			if !slices.ContainsFunc(c.Prefixes, func(p Prefix) bool { return p.Prefix == pr.Prefix.Masked() }) {
				c.Prefixes = append(c.Prefixes, Prefix{Prefix: pr.Prefix.Masked(), Rule: id})
			}
		case pr.Table != 0:
			if _, ok := c.Tables[pr.Table]; !ok {
				c.Tables[pr.Table] = id
			}
		case pr.HasProtocol:
			if _, ok := c.Protocols[pr.Protocol]; !ok {
				c.Protocols[pr.Protocol] = id
			}
		case pr.Rule != nil:
			if len(c.Rules) == MaxRuleSelectors {
				return nil, fmt.Errorf("%s:%d: more than %d rule selectors", pr.At.File, pr.At.Line, MaxRuleSelectors)
			}
			c.Rules = append(c.Rules, RuleSelector{RuleSelector: *pr.Rule, Rule: id})
		case pr.Nexthop != nil:
			if len(c.Nexthops) == MaxNexthopSelectors {
				return nil, fmt.Errorf("%s:%d: more than %d nexthop selectors", pr.At.File, pr.At.Line, MaxNexthopSelectors)
			}
			c.Nexthops = append(c.Nexthops, NexthopSelector{NexthopSelector: *pr.Nexthop, Rule: id})
		}
	}
	for _, a := range p.Allow {
		if a.Comm == "" {
			continue
		}
		if hasMeta(a.Comm) {
			return nil, fmt.Errorf("%s:%d: allow comm %q: block mode needs an exact command name, not a glob", a.At.File, a.At.Line, a.Comm)
		}
		if len(a.Comm) > 15 {
			return nil, fmt.Errorf("%s:%d: allow comm %q: longer than the kernel's 15 bytes", a.At.File, a.At.Line, a.Comm)
		}
		c.Comms = append(c.Comms, a.Comm)
	}
	return c, nil
}

// hasMeta says whether a path.Match pattern has wildcards.
func hasMeta(s string) bool {
	_, err := path.Match(s, "")
	if err != nil {
		return true
	}
	for _, r := range s {
		if r == '*' || r == '?' || r == '[' || r == '\\' {
			return true
		}
	}
	return false
}
