package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestPolicyYAML(t *testing.T) {
	text, lines := policyYAML(modeBlock)
	want := `# routetrace incident scenario (vmtest/incident/enforce.go): the CNI state, protected from all but bird
mode: block
protect:
  - interface: "cali*"
  - table: 100
  - table: 101
  - protocol: bird
  - prefix: 10.244.0.0/16
  - prefix: fd00:244::/48
  - rule: {priority: "512-1601"}
allow:
  - comm: bird
`
	if text != want {
		t.Errorf("policy:\n%s\nwant:\n%s", text, want)
	}
	fileLines := strings.Split(text, "\n")
	for i, l := range lines {
		if got := strings.TrimPrefix(fileLines[l-1], "  - "); got != enforcePolicy[i].yaml {
			t.Errorf("entry %d: line %d is %q, want %q", i, l, fileLines[l-1], enforcePolicy[i].yaml)
		}
	}
	labels := policyLabels("/w/policy.yaml", lines)
	if labels[4] != "protect[4] prefix 10.244.0.0/16 (/w/policy.yaml:8)" || labels[6] != "protect[6] rule priority 512-1601 (/w/policy.yaml:10)" {
		t.Errorf("labels %q", labels)
	}
}

// The objects of one enforce run, as ip -d -N -j shows them.
var (
	encT100    = `{"dst":"10.244.2.0/24","dev":"nd0","table":"100","protocol":"4","scope":"253","flags":[]}`
	encBird    = `{"dst":"10.244.1.0/24","gateway":"198.18.0.254","dev":"nd0","table":"254","protocol":"12","prefsrc":"198.18.0.1","flags":[]}`
	encCali    = `{"dst":"10.244.0.5","dev":"cali1a2b3c","table":"254","protocol":"4","scope":"253","flags":[]}`
	encV6      = `{"dst":"fd00:244::/64","type":"6","dev":"lo","table":"254","protocol":"12","metric":1024,"flags":[],"pref":"medium"}`
	encFree    = `{"dst":"2001:db8:244::/64","dev":"nd0","table":"254","protocol":"4","metric":1024,"flags":[],"pref":"medium"}`
	encRule    = `{"priority":1536,"src":"10.244.0.5","table":"101","protocol":"0"}`
	encRuleOut = `{"priority":32766,"src":"all","table":"254","protocol":"2"}`
)

const (
	ndActorJSON   = `"actor":{"pid":365,"tid":365,"comm":"systemd-network","uid":0,"cgroup_id":1405,"unit":"systemd-networkd.service","exe":"/usr/lib/systemd/systemd-networkd","cmdline":["/lib/systemd/systemd-networkd"],"cgroup":"/system.slice/systemd-networkd.service"}`
	selfActorJSON = `"actor":{"pid":900,"tid":900,"comm":"routetrace","uid":0,"cgroup_id":7}`
	delT100       = `{"op":"delete","object":"route","family":"inet","table":100,"errno":0,"origin":"netlink","netns":4026531840,"dst":"10.244.2.0/24","protocol_num":4,"type":"unicast","metric":0,"oif":3,` + ndActorJSON + `%s}`
	delBird       = `{"op":"delete","object":"route","family":"inet","table":254,"errno":0,"origin":"netlink","netns":4026531840,"dst":"10.244.1.0/24","protocol_num":12,"type":"unicast","metric":0,"oif":3,` + ndActorJSON + `%s}`
	flushBird     = `{"op":"delete","object":"route","family":"inet","table":254,"errno":0,"origin":"kernel","path":"fib_inetaddr_event","netns":4026531840,"dst":"10.244.1.0/24","protocol_num":12,"type":"unicast","metric":0,"oif":3,"actor":{"pid":0,"tid":0,"comm":"kernel","kernel":true},"cause":{"object":"address","op":"delete","ifindex":3,"prefix":"198.18.0.1/24",` + ndActorJSON + `}%s}`
	flushT100     = `{"op":"delete","object":"route","family":"inet","table":100,"errno":0,"origin":"kernel","path":"fib_inetaddr_event","netns":4026531840,"dst":"10.244.2.0/24","protocol_num":4,"type":"unicast","metric":0,"oif":3,"actor":{"pid":0,"tid":0,"comm":"kernel","kernel":true},"cause":{"object":"address","op":"delete","ifindex":3,"prefix":"192.0.2.1/24",` + ndActorJSON + `}%s}`
	delV6         = `{"op":"delete","object":"route","family":"inet6","table":254,"errno":0,"origin":"netlink","netns":4026531840,"dst":"fd00:244::/64","protocol_num":12,"type":"blackhole","metric":1024,"oif":1,` + ndActorJSON + `%s}`
	delFree       = `{"op":"delete","object":"route","family":"inet6","table":254,"errno":0,"origin":"netlink","netns":4026531840,"dst":"2001:db8:244::/64","protocol_num":4,"type":"unicast","metric":1024,"oif":3,` + ndActorJSON + `%s}`
	delRule2      = `{"op":"delete","object":"rule","family":"inet","table":101,"errno":0,"origin":"netlink","netns":4026531840,"priority":1536,"src":"10.244.0.5/32",` + ndActorJSON + `%s}`
)

// judged fills an event template's verdict: verdict, protect entry (-1:
// none), reason, missing_us (-1: none).
func judged(tmpl, verdict string, entry int, reason string, missing int) string {
	var b strings.Builder
	if verdict != "" {
		fmt.Fprintf(&b, `,"verdict":%q`, verdict)
	}
	if entry >= 0 {
		fmt.Fprintf(&b, `,"protected_by":%q`, testLabels[entry])
	}
	if reason != "" {
		fmt.Fprintf(&b, `,"verdict_reason":%q`, reason)
	}
	if missing >= 0 {
		fmt.Fprintf(&b, `,"missing_us":%d`, missing)
	}
	return fmt.Sprintf(tmpl, b.String())
}

// readd is repair putting back what a delete template removed: an add by
// routetrace, which no policy judges. routetrace does not report its own
// re-adds (the repaired removal says it), but a tracer that did must pass
// the checks all the same.
func readd(del string) string {
	add := strings.Replace(strings.Replace(del, `"op":"delete"`, `"op":"add"`, 1), ndActorJSON, selfActorJSON, 1)
	return judged(add, "", -1, "", -1)
}

var testLabels = func() []string {
	_, lines := policyYAML(modeBlock)
	return policyLabels("/w/policy.yaml", lines)
}()

const (
	reasonKernel   = "a kernel-internal removal: it cannot be refused, only its cause (see README#enforce)"
	reasonNoSource = "repair failed: invalid prefsrc 198.18.0.1"
)

func enforceSnap(t *testing.T, addr bool, v4 []string, v6 []string, rules []string) *snapshot {
	t.Helper()
	var addrs []string
	if addr {
		addrs = []string{"3 inet 198.18.0.1/24"}
	}
	return snap(t, addrs, map[string][]string{"inet": v4, "inet6": v6}, map[string][]string{"inet": rules})
}

func TestCheckEnforce(t *testing.T) {
	before := enforceSnap(t, true, []string{encT100, encBird, encCali}, []string{encV6, encFree}, []string{encRule, encRuleOut})
	kept := enforceSnap(t, false, []string{encT100, encCali}, []string{encV6}, []string{encRule, encRuleOut})
	removed := enforceSnap(t, false, []string{encCali}, nil, []string{encRuleOut})
	pol := &enforcePolicyFile{path: "/w/policy.yaml", labels: testLabels}

	blocked := []string{
		judged(delT100, "blocked", 1, "", -1), judged(delBird, "blocked", 3, "", -1), judged(delV6, "blocked", 3, "", -1),
		judged(delRule2, "blocked", 6, "", -1), judged(delFree, "", -1, "", -1), judged(flushBird, "would-block", 3, reasonKernel, -1),
	}
	audit := []string{
		judged(delT100, "would-block", 1, "", -1), judged(delBird, "would-block", 3, "", -1), judged(delV6, "would-block", 3, "", -1),
		judged(delRule2, "would-block", 6, "", -1), judged(delFree, "", -1, "", -1),
	}
	repaired := []string{
		judged(delT100, "repaired", 1, "", 420), readd(delT100),
		judged(delBird, "repaired", 3, "", 510), readd(delBird), judged(flushBird, "would-block", 3, reasonNoSource, -1),
		judged(delV6, "repaired", 3, "", 380), readd(delV6), judged(delRule2, "repaired", 6, "", 390), readd(delRule2),
		judged(delFree, "", -1, "", -1),
	}
	replace := func(lines []string, i int, line string) []string {
		out := slices.Clone(lines)
		out[i] = line
		return out
	}
	var repairedOnly []string // as routetrace reports a repair: no re-add
	for _, l := range repaired {
		if !strings.Contains(l, `"op":"add"`) {
			repairedOnly = append(repairedOnly, l)
		}
	}
	for _, tc := range []struct {
		name   string
		mode   string
		after  *snapshot
		lines  []string
		fail   string // substring of the first failure; "" for a pass
		counts [3]int // blocked, would-block, repaired
	}{
		{"block", modeBlock, kept, blocked, "", [3]int{4, 1, 0}},
		{"block: a request not refused", modeBlock, kept,
			replace(blocked, 0, judged(delT100, "would-block", 1, "not refused in the kernel", -1)), "verdict \"would-block\", want blocked", [3]int{3, 2, 0}},
		{"block: a request reported twice", modeBlock, kept, append(slices.Clone(blocked), blocked[3]), "2 judged removal requests", [3]int{5, 1, 0}},
		{"block: a request not reported", modeBlock, kept, blocked[1:], "table=100 type=1 dst=10.244.2.0/24 metric=0 oif=3: 0 judged", [3]int{3, 1, 0}},
		{"block: the first entry is not named", modeBlock, kept,
			replace(blocked, 0, judged(delT100, "blocked", 4, "", -1)), `protected_by "protect[4] prefix 10.244.0.0/16 (/w/policy.yaml:8)", want "protect[1] table 100 (/w/policy.yaml:5)"`, [3]int{4, 1, 0}},
		{"block: blocked by someone else", modeBlock, kept,
			replace(blocked, 3, strings.Replace(blocked[3], `"pid":365`, `"pid":366`, 1)), "blocked request, actor is not networkd", [3]int{4, 1, 0}},
		{"block: kernel removal without its reason", modeBlock, kept,
			replace(blocked, 5, judged(flushBird, "would-block", 3, "", -1)), "does not say kernel-internal", [3]int{4, 1, 0}},
		{"block: the kernel removal not reported", modeBlock, kept, blocked[:5], "no kernel removal is reported", [3]int{4, 0, 0}},
		{"block: protected state lost", modeBlock, enforceSnap(t, false, []string{encCali}, []string{encV6}, []string{encRule, encRuleOut}), blocked,
			"table=100 type=1 dst=10.244.2.0/24 metric=0 oif=3: protected, gone", [3]int{4, 1, 0}},
		{"block: a verdict on unprotected state", modeBlock, kept,
			replace(blocked, 4, judged(delFree, "would-block", 4, "", -1)), "verdict would-block on a change that is not a removal of protected state", [3]int{4, 2, 0}},
		{"block: the kernel flushes a refused route (6.1: nd0 without an IPv4 address for a moment)", modeBlock,
			enforceSnap(t, false, []string{encCali}, []string{encV6}, []string{encRule, encRuleOut}),
			append(slices.Clone(blocked), judged(flushT100, "would-block", 1, reasonKernel, -1)), "", [3]int{4, 2, 0}},
		{"audit", modeAudit, removed, audit, "", [3]int{0, 4, 0}},
		{"audit: a target survived", modeAudit, enforceSnap(t, false, []string{encCali}, nil, []string{encRule, encRuleOut}), audit,
			"audit refused nothing, yet networkd's target survived", [3]int{0, 4, 0}},
		{"audit: a removal not judged", modeAudit, removed, replace(audit, 3, judged(delRule2, "", -1, "", -1)),
			`rule inet prio=1536 src=10.244.0.5/32 dst= iif= oif= table=101: networkd's removal has verdict "", want would-block`, [3]int{0, 3, 0}},
		{"repair", modeRepair, kept, repaired, "", [3]int{0, 1, 4}},
		{"repair, no re-add reported", modeRepair, kept, repairedOnly, "", [3]int{0, 1, 4}},
		{"repair: reported repaired, gone", modeRepair, enforceSnap(t, false, []string{encCali}, []string{encV6}, []string{encRule, encRuleOut}), repairedOnly,
			"table=100 type=1 dst=10.244.2.0/24 metric=0 oif=3: reported adds and deletes do not add up", [3]int{0, 1, 4}},
		{"repair: a kernel removal repaired", modeRepair, kept,
			append(slices.Clone(repairedOnly), judged(flushT100, "repaired", 1, "", 3000)), "", [3]int{0, 1, 5}},
		{"repair: a kernel removal not repaired", modeRepair, enforceSnap(t, false, []string{encCali}, []string{encV6}, []string{encRule, encRuleOut}),
			append(slices.Clone(repairedOnly), judged(flushT100, "would-block", 1, "repair failed: network is unreachable", -1)),
			"table=100 type=1 dst=10.244.2.0/24 metric=0 oif=3: protected, gone after the restart", [3]int{0, 2, 4}},
		{"repair: no time missing", modeRepair, kept, replace(repaired, 0, judged(delT100, "repaired", 1, "", 0)), "missing_us 0, want above 0", [3]int{0, 1, 4}},
		{"repair: put back different", modeRepair,
			enforceSnap(t, false, []string{strings.Replace(encT100, `"protocol":"4"`, `"protocol":"3"`, 1), encCali}, []string{encV6}, []string{encRule, encRuleOut}),
			repaired, "protected, changed by the restart", [3]int{0, 1, 4}},
		{"repair: an unrepairable route without a reason", modeRepair, kept,
			replace(repaired, 4, judged(flushBird, "would-block", 3, "", -1)), "not repaired and no verdict_reason says why", [3]int{0, 1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := events(t, tc.lines...)
			v := &verdict{}
			check(v, withoutBlocked(evs), before, tc.after, nd, testNetns)
			checkEnforce(v, tc.mode, pol, evs, before, tc.after, nd, testNetns)
			tallyVerdicts(v, evs)
			switch {
			case tc.fail == "" && len(v.failures) > 0:
				t.Errorf("failures %q, want none", v.failures)
			case tc.fail != "" && !slices.ContainsFunc(v.failures, func(f string) bool { return strings.Contains(f, tc.fail) }):
				t.Errorf("failures %q, want one containing %q", v.failures, tc.fail)
			}
			if got := [3]int{v.blocked, v.wouldBlock, v.repaired}; got != tc.counts {
				t.Errorf("blocked, would-block, repaired = %v, want %v", got, tc.counts)
			}
		})
	}
}

func TestNetworkdTargets(t *testing.T) {
	before := enforceSnap(t, true, []string{encT100, encBird, encCali}, []string{encV6, encFree}, []string{encRule, encRuleOut})
	after := enforceSnap(t, false, []string{encCali}, nil, []string{encRuleOut})
	prot, err := protectedObjects(before)
	if err != nil {
		t.Fatal(err)
	}
	wantProt := map[string]int{
		"route inet table=100 type=1 dst=10.244.2.0/24 metric=0 oif=3":     1,
		"route inet table=254 type=1 dst=10.244.1.0/24 metric=0 oif=3":     3,
		"route inet table=254 type=1 dst=10.244.0.5/32 metric=0 oif=5":     0,
		"route inet6 table=254 type=6 dst=fd00:244::/64 metric=1024 oif=0": 3,
		"rule inet prio=1536 src=10.244.0.5/32 dst= iif= oif= table=101":   6,
	}
	if fmt.Sprint(prot) != fmt.Sprint(wantProt) {
		t.Errorf("protected %v, want %v", prot, wantProt)
	}
	targets, err := networkdTargets(before, prot)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sortedKeys(targets), []string{
		"route inet table=100 type=1 dst=10.244.2.0/24 metric=0 oif=3",
		"route inet table=254 type=1 dst=10.244.1.0/24 metric=0 oif=3",
		"route inet6 table=254 type=6 dst=fd00:244::/64 metric=1024 oif=0",
		"rule inet prio=1536 src=10.244.0.5/32 dst= iif= oif= table=101",
	}; !slices.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	losses, err := kernelLosses(before, after, prot)
	if err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(losses); !slices.Equal(got, []string{"route inet table=254 type=1 dst=10.244.1.0/24 metric=0 oif=3"}) {
		t.Errorf("losses %q", got)
	}

	// The plain restart: networkd removed exactly the targets by request.
	restart := []string{judged(delT100, "", -1, "", -1), judged(delBird, "", -1, "", -1), judged(delV6, "", -1, "", -1),
		judged(delRule2, "", -1, "", -1), judged(delFree, "", -1, "", -1)}
	v := &verdict{}
	checkTargets(v, events(t, restart...), before, testNetns)
	if len(v.failures) > 0 {
		t.Errorf("failures %q, want none", v.failures)
	}
	v = &verdict{}
	checkTargets(v, events(t, restart[1:]...), before, testNetns)
	if len(v.failures) != 1 || !strings.Contains(v.failures[0], "the enforce variants expect") {
		t.Errorf("failures %q, want one saying networkd removed other than expected", v.failures)
	}
}

func TestMissing(t *testing.T) {
	v := &verdict{missingUs: []uint64{900, 120, 450, 300}}
	if med, worst := v.missing(); med != 450 || worst != 900 {
		t.Errorf("missing() = %d, %d; want 450, 900", med, worst)
	}
}
