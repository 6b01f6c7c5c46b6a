package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The enforce half of the scenario (issue 9): the same restart, with
// routetrace judging every change by a policy that protects the CNI state
// cniState installs and allows nothing networkd is.
//
//   - enforce-audit (`routetrace trace --policy`): networkd removes what it
//     removes in restart; every removal of protected state is would-block.
//   - enforce-block (`routetrace enforce --mode block`): the kernel refuses
//     networkd's requests; every refused request is one blocked event and
//     the protected state is as it was, except routes the kernel flushes
//     when networkd removes an address they use (kernel-internal removals
//     cannot be refused: would-block, saying so). Enforcement outlives
//     routetrace, even a SIGKILL, until `routetrace enforce --release`.
//   - enforce-repair (`routetrace enforce --mode repair`): networkd's
//     removals happen and routetrace puts the state back, identical, each
//     a repaired event with how long it was missing.

// Enforce modes, as routetrace names them.
const (
	modeAudit  = "audit"
	modeBlock  = "block"
	modeRepair = "repair"
)

// Verdicts, as routetrace's JSON names them.
const (
	verdictWouldBlock = "would-block"
	verdictBlocked    = "blocked"
	verdictRepaired   = "repaired"
)

// kernelInternal is what a kernel-internal removal's verdict_reason must
// say in block mode: that it could not be refused.
const kernelInternal = "kernel-internal"

// protectSel is one protect entry of the scenario's policy: its YAML, the
// selector as routetrace's protected_by names it, and which ip objects it
// covers. The coverage is the policy package's documented semantics
// written out here from its package comment, not taken from the package,
// so that the check holds the enforcer to the documentation.
type protectSel struct {
	yaml  string
	label string
	route func(r ipRoute, family string) bool
	rule  func(r ipRule) bool
}

// enforcePolicy protects everything cniState installs. A change matches the
// first entry that covers its object, so the order decides protected_by:
// tables and protocol before the prefixes, so that networkd's requests
// name four different entries (table 100, protocol bird, the v4 prefix,
// the rule range) and a matcher that picks another entry than the first
// shows. networkd's own link nd0 is deliberately not protected: networkd
// owns it, and protecting it would refuse networkd its own addresses and
// routes. The price is that 10.244.1.0/24, which uses an address networkd
// did not configure on nd0 as its source, is flushed by the kernel when
// networkd removes that address; the scenario asserts exactly that loss,
// reported would-block as kernel-internal. 2001:db8:244::/64 on nd0 (main
// table, proto static) is covered by no entry: networkd removes it
// unjudged in every mode, the control that the policy is not "everything".
var enforcePolicy = []protectSel{
	{yaml: `interface: "cali*"`, label: "interface cali*", route: func(r ipRoute, _ string) bool { return strings.HasPrefix(r.Dev, "cali") }},
	{yaml: "table: 100", label: "table 100", route: inTable(100)},
	{yaml: "table: 101", label: "table 101", route: inTable(101)},
	{yaml: "protocol: bird", label: "protocol bird", route: func(r ipRoute, _ string) bool { return r.Protocol == "12" }},
	{yaml: "prefix: 10.244.0.0/16", label: "prefix 10.244.0.0/16", route: inPrefix("10.244.0.0/16")},
	{yaml: "prefix: fd00:244::/48", label: "prefix fd00:244::/48", route: inPrefix("fd00:244::/48")},
	{yaml: `rule: {priority: "512-1601"}`, label: "rule priority 512-1601", rule: func(r ipRule) bool { return r.Priority >= 512 && r.Priority <= 1601 }},
}

// enforceAllow allows bird alone: nothing networkd is (its comm, unit,
// cgroup and executable all differ).
const enforceAllow = "comm: bird"

func inTable(t int) func(ipRoute, string) bool {
	want := strconv.Itoa(t)
	return func(r ipRoute, _ string) bool { return r.Table == want }
}

// inPrefix: a route inside the prefix, as long or longer, any table.
func inPrefix(s string) func(ipRoute, string) bool {
	pfx := netip.MustParsePrefix(s)
	return func(r ipRoute, family string) bool {
		dst, err := parsePrefix(r.Dst, family)
		return err == nil && dst.Addr().Is4() == pfx.Addr().Is4() && dst.Bits() >= pfx.Bits() && pfx.Contains(dst.Addr())
	}
}

// policyYAML is the policy file for mode. It returns the file's text and
// the line of each protect entry, which protected_by names.
func policyYAML(mode string) (string, []int) {
	var b strings.Builder
	b.WriteString("# routetrace incident scenario (vmtest/incident/enforce.go): the CNI state, protected from all but bird\n")
	fmt.Fprintf(&b, "mode: %s\nprotect:\n", mode)
	lines := make([]int, len(enforcePolicy))
	for i, p := range enforcePolicy {
		lines[i] = 4 + i
		fmt.Fprintf(&b, "  - %s\n", p.yaml)
	}
	fmt.Fprintf(&b, "allow:\n  - %s\n", enforceAllow)
	return b.String(), lines
}

// enforcePolicyFile is a written policy: where, and how routetrace must
// name each of its protect entries.
type enforcePolicyFile struct {
	path   string
	labels []string
}

func writePolicy(dir, mode string) (*enforcePolicyFile, error) {
	text, lines := policyYAML(mode)
	p := &enforcePolicyFile{path: filepath.Join(dir, "policy.yaml")}
	if err := os.WriteFile(p.path, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("writing the policy: %w", err)
	}
	p.labels = policyLabels(p.path, lines)
	return p, nil
}

// policyLabels: protected_by as the policy package documents it,
// "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)", the file as routetrace
// was given it.
func policyLabels(path string, lines []int) []string {
	labels := make([]string, len(enforcePolicy))
	for i, p := range enforcePolicy {
		labels[i] = fmt.Sprintf("protect[%d] %s (%s:%d)", i, p.label, path, lines[i])
	}
	return labels
}

// protectedBy is the index of the first protect entry covering the
// snapshot object k (raw: ip's JSON of it), or -1.
func protectedBy(k, raw string) (int, error) {
	kind, rest, _ := strings.Cut(k, " ")
	family, _, _ := strings.Cut(rest, " ")
	switch kind {
	case "route":
		var r ipRoute
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return -1, err
		}
		for i, p := range enforcePolicy {
			if p.route != nil && p.route(r, family) {
				return i, nil
			}
		}
	case "rule":
		var r ipRule
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return -1, err
		}
		for i, p := range enforcePolicy {
			if p.rule != nil && p.rule(r) {
				return i, nil
			}
		}
	default:
		return -1, fmt.Errorf("snapshot key %q is neither a route nor a rule", k)
	}
	return -1, nil
}

// protectedObjects is every protected object of a snapshot, with its
// protect entry.
func protectedObjects(s *snapshot) (map[string]int, error) {
	out := map[string]int{}
	for k, raw := range s.objects() {
		i, err := protectedBy(k, raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if i >= 0 {
			out[k] = i
		}
	}
	return out, nil
}

// networkdTargets is the protected state networkd asks to remove when it
// restarts with ManageForeignRoutes=yes and
// ManageForeignRoutingPolicyRules=yes (systemd 252): every foreign rule,
// every foreign route on a link it manages, and device-less routes
// (blackholes), but nothing on the links it does not manage. The plain
// restart variant checks this against what networkd did without
// enforcement, so that the enforce variants' expectations stay true.
func networkdTargets(before *snapshot, prot map[string]int) (map[string]bool, error) {
	out := map[string]bool{}
	for k := range prot {
		raw := before.objects()[k]
		if strings.HasPrefix(k, "rule ") {
			out[k] = true
			continue
		}
		var r ipRoute
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		typ := 1
		if r.Type != "" {
			typ, _ = strconv.Atoi(r.Type)
		}
		if r.Dev == managedLink || devicelessType(typ) {
			out[k] = true
		}
	}
	return out, nil
}

// protectedTargets is a snapshot's protected objects and, of those, what
// networkd targets.
func protectedTargets(s *snapshot) (map[string]int, map[string]bool, error) {
	prot, err := protectedObjects(s)
	if err != nil {
		return nil, nil, err
	}
	targets, err := networkdTargets(s, prot)
	return prot, targets, err
}

// kernelLosses is the protected state no enforcement can keep: routes whose
// preferred source is an address present before and gone after, which the
// kernel flushes with the address (fib_del_ifaddr).
func kernelLosses(before, after *snapshot, prot map[string]int) (map[string]bool, error) {
	gone := map[string]bool{}
	for a := range before.addrs {
		if !after.addrs[a] {
			f := strings.Fields(a)
			if len(f) == 3 {
				local, _, _ := strings.Cut(f[2], "/")
				gone[local] = true
			}
		}
	}
	out := map[string]bool{}
	for k := range prot {
		raw, ok := before.routes[k]
		if !ok {
			continue
		}
		var r ipRoute
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if r.Prefsrc != "" && gone[r.Prefsrc] {
			out[k] = true
		}
	}
	return out, nil
}

// withoutBlocked is the events that changed something: a blocked request
// was refused before the kernel acted on it.
func withoutBlocked(evs []*rtEvent) []*rtEvent {
	return slices.DeleteFunc(slices.Clone(evs), func(ev *rtEvent) bool { return ev.Verdict == verdictBlocked })
}

// tallyVerdicts counts what routetrace said, in every namespace: the
// counts the result line carries.
func tallyVerdicts(v *verdict, evs []*rtEvent) {
	for _, ev := range evs {
		switch ev.Verdict {
		case verdictBlocked:
			v.blocked++
		case verdictWouldBlock:
			v.wouldBlock++
		case verdictRepaired:
			v.repaired++
			if ev.MissingUs != nil {
				v.missingUs = append(v.missingUs, *ev.MissingUs)
			}
		}
	}
}

// checkEnforce holds routetrace's verdicts to the policy and the snapshots,
// for one mode. check has already held the state-changing events (all but
// the blocked) to the snapshots and their actors to networkd.
//
//   - A verdict only on a protected object, and only on its removal: adds
//     do not count (operations.more-specific is false), and a failed
//     request is no change.
//   - protected_by is the first entry covering the object, with the file
//     and line.
//   - Each protected object networkd asks to remove (networkdTargets) is
//     one judged request by networkd: would-block (audit), blocked (block;
//     nothing else: "not refused" is a failure), repaired with missing_us
//     above 0 (repair; or would-block with a reason for state that cannot
//     be put back).
//   - Kernel removals of protected state are would-block with the cause
//     networkd (checked by check); in block mode the reason says
//     kernel-internal; in repair mode they are repaired or say why not.
//     The kernel losses (kernelLosses) are among them, and gone after.
//   - After: block leaves every protected object exactly as ip showed it
//     before but for kernel removals; repair every one but the kernel
//     losses; audit leaves networkd's targets removed.
func checkEnforce(v *verdict, mode string, pol *enforcePolicyFile, evs []*rtEvent, before, after *snapshot, nd networkd, netns uint64) {
	prot, targets, err := protectedTargets(before)
	if err != nil {
		v.failf("reading the snapshot before: %v", err)
		return
	}
	losses, err := kernelLosses(before, after, prot)
	if err != nil {
		v.failf("reading the snapshot before: %v", err)
		return
	}
	if len(targets) == 0 {
		v.failf("networkd has no protected state to remove: the scenario protects nothing it touches")
	}
	requests := map[string]int{}
	kernelRemoved := map[string]bool{}
	unrepaired := map[string]bool{} // repair mode: removals reported as not put back
	for _, ev := range evs {
		if ev.Netns != netns || (ev.Object != "route" && ev.Object != "rule") || ev.Op == "flush" {
			continue
		}
		k, err := ev.key()
		if err != nil {
			continue // check has reported it
		}
		idx, isProt := prot[k]
		counts := ev.Op == "delete" && (ev.Errno == 0 || ev.Verdict == verdictBlocked)
		if !isProt || !counts {
			if ev.Verdict != "" {
				v.failf("%s: verdict %s on a change that is not a removal of protected state: %s", k, ev.Verdict, ev.line)
			}
			continue
		}
		if want := pol.labels[idx]; ev.ProtectedBy != want {
			v.failf("%s: protected_by %q, want %q: %s", k, ev.ProtectedBy, want, ev.line)
		}
		if ev.Origin == "kernel" {
			kernelRemoved[k] = true
			switch {
			case mode == modeRepair && ev.Verdict == verdictRepaired:
			case ev.Verdict != verdictWouldBlock:
				v.failf("%s: a kernel removal with verdict %q, want %s: %s", k, ev.Verdict, verdictWouldBlock, ev.line)
			case mode == modeBlock && !strings.Contains(ev.VerdictReason, kernelInternal):
				v.failf("%s: a kernel removal in block mode whose verdict_reason %q does not say %s: %s", k, ev.VerdictReason, kernelInternal, ev.line)
			case mode == modeRepair:
				unrepaired[k] = true
				if ev.VerdictReason == "" {
					v.failf("%s: not repaired and no verdict_reason says why: %s", k, ev.line)
				}
			}
			continue
		}
		requests[k]++
		if ev.Verdict == verdictBlocked && !nd.is(ev.Actor) {
			v.failf("%s: blocked request, actor is not networkd (comm %s, %s): %s", k, networkdComm, nd, ev.line)
		}
		want := map[string]string{modeAudit: verdictWouldBlock, modeBlock: verdictBlocked, modeRepair: verdictRepaired}[mode]
		switch {
		case mode == modeRepair && losses[k] && ev.Verdict == verdictWouldBlock:
			// Removed again, or its source address gone, before the
			// repair: it cannot be put back; the reason must say so.
			unrepaired[k] = true
			if ev.VerdictReason == "" {
				v.failf("%s: not repaired and no verdict_reason says why: %s", k, ev.line)
			}
		case ev.Verdict != want:
			v.failf("%s: networkd's removal has verdict %q, want %s (reason %q): %s", k, ev.Verdict, want, ev.VerdictReason, ev.line)
		case mode == modeRepair && (ev.MissingUs == nil || *ev.MissingUs == 0):
			v.failf("%s: repaired with missing_us %s, want above 0: %s", k, fmtOpt(ev.MissingUs), ev.line)
		}
	}
	for _, k := range sortedKeys(targets) {
		if requests[k] != 1 {
			v.failf("%s: %d judged removal requests by networkd, want 1 (one per request networkd makes)", k, requests[k])
		}
	}
	for _, k := range sortedKeys(requests) {
		if !targets[k] {
			v.failf("%s: a judged removal request, but networkd does not remove it when it restarts", k)
		}
	}
	afterObjs, beforeObjs := after.objects(), before.objects()
	if mode == modeAudit {
		for _, k := range sortedKeys(targets) {
			if _, ok := afterObjs[k]; ok {
				v.failf("%s: audit refused nothing, yet networkd's target survived", k)
			}
		}
		return
	}
	for _, k := range sortedKeys(losses) {
		if _, ok := afterObjs[k]; ok {
			v.failf("%s: its source address is gone, yet the route survived (%s)", k, afterObjs[k])
		}
		if mode == modeBlock && !kernelRemoved[k] {
			v.failf("%s: flushed with its source address, but no kernel removal is reported", k)
		}
		if mode == modeRepair && !unrepaired[k] {
			v.failf("%s: cannot be repaired (its source address is gone), but no removal says so", k)
		}
	}
	for _, k := range sortedKeys(prot) {
		// Block mode cannot keep what the kernel removes: on 6.1 the
		// kernel flushes every IPv4 route through nd0 in the moment
		// networkd has dropped its own address and not yet re-added it,
		// refused routes included. Repair can put those back.
		if losses[k] || mode == modeBlock && kernelRemoved[k] {
			continue
		}
		if got, ok := afterObjs[k]; !ok {
			v.failf("%s: protected, gone after the restart (before: %s)", k, beforeObjs[k])
		} else if got != beforeObjs[k] {
			v.failf("%s: protected, changed by the restart: before %s, after %s", k, beforeObjs[k], got)
		}
	}
	for _, k := range sortedKeys(kernelRemoved) {
		if mode == modeBlock && !losses[k] {
			v.notes = append(v.notes, fmt.Sprintf("%s: removed by the kernel (kernel-internal, not refusable) though its source address stayed", k))
		}
	}
}

// checkTargets is the plain restart's check that networkdTargets says
// what networkd does: the protected state it removed by request.
func checkTargets(v *verdict, evs []*rtEvent, before *snapshot, netns uint64) {
	prot, targets, err := protectedTargets(before)
	if err != nil {
		v.failf("reading the snapshot before: %v", err)
		return
	}
	removed := map[string]bool{}
	for _, ev := range evs {
		if ev.Netns != netns || ev.Op != "delete" || ev.Errno != 0 || ev.Origin == "kernel" {
			continue
		}
		if k, err := ev.key(); err == nil {
			if _, ok := prot[k]; ok {
				removed[k] = true
			}
		}
	}
	if got, want := sortedKeys(removed), sortedKeys(targets); !slices.Equal(got, want) {
		v.failf("networkd removed protected state %q by request, the enforce variants expect %q (networkdTargets)", got, want)
	}
}

// protectedSame: every object protected before is in after exactly as
// before.
func protectedSame(v *verdict, what string, before, after *snapshot) {
	prot, err := protectedObjects(before)
	if err != nil {
		v.failf("%s: %v", what, err)
		return
	}
	b, a := before.objects(), after.objects()
	for _, k := range sortedKeys(prot) {
		if a[k] != b[k] {
			v.failf("%s: %s was %s, is %q", what, k, b[k], a[k])
		}
	}
}

func fmtOpt(p *uint64) string {
	if p == nil {
		return "absent"
	}
	return strconv.FormatUint(*p, 10)
}
