package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// issueExample is the example of issue 9.
const issueExample = `mode: block            # audit | block | repair; --mode overrides
protect:
  - prefix: 10.244.0.0/16      # every route inside it, any table
  - interface: "cali*"
  - table: 100
  - protocol: bird
  - rule: {priority: "512-1024"}
allow:                 # who may still change protected state
  - unit: calico-node.service
  - pod: "kube-system/calico-node-*"
  - comm: bird
`

func TestParseIssueExample(t *testing.T) {
	p, err := Parse("policy.yaml", []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	at := func(line int) Where { return Where{File: "policy.yaml", Line: line} }
	want := &Policy{
		Source: "policy.yaml",
		Mode:   ModeBlock,
		Protect: []Protect{
			{At: at(3), Index: 0, Prefix: netip.MustParsePrefix("10.244.0.0/16")},
			{At: at(4), Index: 1, Interface: "cali*"},
			{At: at(5), Index: 2, Table: 100},
			{At: at(6), Index: 3, Protocol: 12, HasProtocol: true},
			{At: at(7), Index: 4, Rule: &RuleSelector{PriorityMin: 512, PriorityMax: 1024, HasPriority: true}},
		},
		Allow: []Allow{
			{At: at(9), Index: 0, Unit: "calico-node.service"},
			{At: at(10), Index: 1, Pod: "kube-system/calico-node-*"},
			{At: at(11), Index: 2, Comm: "bird"},
		},
		Operations: Operations{Replace: true},
	}
	if !equalPolicies(p, want, true) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	for i, label := range []string{
		"protect[0] prefix 10.244.0.0/16 (policy.yaml:3)",
		"protect[1] interface cali* (policy.yaml:4)",
		"protect[2] table 100 (policy.yaml:5)",
		"protect[3] protocol bird (policy.yaml:6)",
		"protect[4] rule priority 512-1024 (policy.yaml:7)",
	} {
		if got := p.Protect[i].String(); got != label {
			t.Errorf("protect[%d].String() = %q, want %q", i, got, label)
		}
	}
}

func TestParseForms(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      Protect
	}{
		{"ipv6 prefix", "prefix: fd00:10:244::/48", Protect{Prefix: netip.MustParsePrefix("fd00:10:244::/48")}},
		{"table main", "table: main", Protect{Table: 254}},
		{"table local", "table: local", Protect{Table: 255}},
		{"table default", "table: default", Protect{Table: 253}},
		{"table quoted number", `table: "4000000000"`, Protect{Table: 4000000000}},
		{"protocol number", "protocol: 200", Protect{Protocol: 200, HasProtocol: true}},
		{"protocol zero", "protocol: 0", Protect{Protocol: 0, HasProtocol: true}},
		{"protocol static", "protocol: static", Protect{Protocol: 4, HasProtocol: true}},
		{"protocol keepalived", "protocol: keepalived", Protect{Protocol: 18, HasProtocol: true}},
		{"protocol openr", "protocol: openr", Protect{Protocol: 99, HasProtocol: true}},
		{"rule priority number", "rule: {priority: 100}", Protect{Rule: &RuleSelector{PriorityMin: 100, PriorityMax: 100, HasPriority: true}}},
		{"rule priority zero", "rule: {priority: 0}", Protect{Rule: &RuleSelector{HasPriority: true}}},
		{"rule every field", "rule: {priority: 1-2, table: main, family: inet6}",
			Protect{Rule: &RuleSelector{PriorityMin: 1, PriorityMax: 2, HasPriority: true, Table: 254, Family: event.FamilyInet6}}},
		{"rule any", "rule: {}", Protect{Rule: &RuleSelector{}}},
		{"nexthop range", `nexthop: {id: "10-20"}`, Protect{Nexthop: &NexthopSelector{IDMin: 10, IDMax: 20}}},
		{"nexthop groups", "nexthop: {group: true}", Protect{Nexthop: &NexthopSelector{Groups: true}}},
		{"nexthop group false", "nexthop: {id: 7, group: false}", Protect{Nexthop: &NexthopSelector{IDMin: 7, IDMax: 7}}},
		{"interface exact", "interface: vxlan.calico", Protect{Interface: "vxlan.calico"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte("protect:\n  - "+tc.src+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			tc.want.At = Where{File: "p.yaml", Line: 2}
			if got := p.Protect[0]; !equalProtect(&got, &tc.want, true) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	p, err := Parse("p.yaml", []byte("protect:\n  - table: 100\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeAuto || p.Operations != (Operations{Replace: true}) || p.Allow != nil {
		t.Errorf("mode %q, operations %+v, allow %v: want auto, replace only, nobody", p.Mode, p.Operations, p.Allow)
	}
	p, err = Parse("p.yaml", []byte("protect: [{table: 1}]\noperations: {more-specific: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Operations != (Operations{Replace: true, MoreSpecific: true}) {
		t.Errorf("operations %+v: replace must stay on by default", p.Operations)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"bad CIDR", "protect:\n  - prefix: 10.244.0.0/33\n",
			[]string{`policy.yaml:2: protect[0].prefix: "10.244.0.0/33" is not a CIDR`}},
		{"host bits", "protect:\n  - prefix: 10.244.1.0/16\n",
			[]string{`policy.yaml:2: protect[0].prefix: "10.244.1.0/16" has host bits set: write 10.244.0.0/16`}},
		{"unknown key", "protect:\n  - table: 1\n  - protcol: bird\n",
			[]string{`policy.yaml:3: protect[1].protcol: unknown key "protcol" (did you mean "protocol"?); known keys: prefix, interface, table, protocol, rule, nexthop`}},
		{"unknown key far from any", "protect: [{table: 1}]\nfoo: 1\n",
			[]string{`policy.yaml:2: foo: unknown key "foo"; known keys: mode, protect, allow, operations`}},
		{"duplicate key", "protect: [{table: 1}]\nmode: audit\nmode: block\n",
			[]string{`policy.yaml:3: mode: given twice (first at line 2)`}},
		{"no selector", "protect:\n  - {}\n",
			[]string{`policy.yaml:2: protect[0]: no selector: give one of prefix, interface, table, protocol, rule, nexthop`}},
		{"two selectors", "protect:\n  - prefix: 10.0.0.0/8\n    table: 5\n",
			[]string{`policy.yaml:2: protect[0]: 2 selectors, prefix (line 2), table (line 3): give one per entry (an entry with several would need all of them to match)`}},
		{"two allow selectors", "protect: [{table: 1}]\nallow:\n  - {comm: bird, unit: bird.service}\n",
			[]string{`policy.yaml:3: allow[0]: 2 selectors, comm (line 3), unit (line 3): give one per entry (an entry with several would need all of them to match)`}},
		{"empty protect", "protect: []\n",
			[]string{`policy.yaml:1: protect: empty: a policy protects at least one thing`}},
		{"null protect", "mode: audit\nprotect:\n",
			[]string{`policy.yaml:2: protect: empty: a policy protects at least one thing`}},
		{"missing protect", "mode: audit\n",
			[]string{`policy.yaml:1: protect: missing: a policy protects at least one thing`}},
		{"empty file", "",
			[]string{`policy.yaml:1: protect: missing: a policy protects at least one thing`}},
		{"not a mapping", "- table: 1\n",
			[]string{`policy.yaml:1: a list: want a mapping of mode, protect, allow, operations`}},
		{"protect not a list", "protect: {table: 1}\n",
			[]string{`policy.yaml:1: protect: a mapping: want a list`}},
		{"bad mode", "mode: blok\nprotect: [{table: 1}]\n",
			[]string{`policy.yaml:1: mode: "blok" is not a mode: audit, block, repair or auto`}},
		{"bad protocol", "protect:\n  - protocol: birb\n",
			[]string{`policy.yaml:2: protect[0].protocol: "birb" is not a protocol: give a name from rt_protos (` + strings.Join(builtinProtocols(), ", ") + `) or a number 0-255`}},
		{"protocol too big", "protect:\n  - protocol: 256\n",
			[]string{`policy.yaml:2: protect[0].protocol: "256" is not a protocol: give a name from rt_protos (` + strings.Join(builtinProtocols(), ", ") + `) or a number 0-255`}},
		{"bad table", "protect:\n  - table: mian\n",
			[]string{`policy.yaml:2: protect[0].table: "mian" is not a table: give main, local, default, a name from rt_tables or a number 1-4294967295`}},
		{"table zero", "protect:\n  - table: 0\n",
			[]string{`policy.yaml:2: protect[0].table: table 0 is unspec, not a table: main is 254`}},
		{"table a list", "protect:\n  - table: [1, 2]\n",
			[]string{`policy.yaml:2: protect[0].table: a list: want a table name or number`}},
		{"prefix null", "protect:\n  - prefix:\n",
			[]string{`policy.yaml:2: protect[0].prefix: no value: want a CIDR prefix`}},
		{"priority range reversed", "protect:\n  - rule: {priority: \"1024-512\"}\n",
			[]string{`policy.yaml:2: protect[0].rule.priority: "1024-512" is an empty range: write 512-1024`}},
		{"priority not a number", "protect:\n  - rule: {priority: high}\n",
			[]string{`policy.yaml:2: protect[0].rule.priority: "high" is not a number or a range "A-B" of numbers 0-4294967295`}},
		{"rule family", "protect:\n  - rule: {family: ipv4}\n",
			[]string{`policy.yaml:2: protect[0].rule.family: "ipv4" is not a family: inet or inet6`}},
		{"rule unknown key", "protect:\n  - rule: {prio: 5}\n",
			[]string{`policy.yaml:2: protect[0].rule.prio: unknown key "prio"; known keys: priority, table, family`}},
		{"nexthop id zero", "protect:\n  - nexthop: {id: 0}\n",
			[]string{`policy.yaml:2: protect[0].nexthop.id: "0": the lowest is 1`}},
		{"nexthop group not bool", "protect:\n  - nexthop: {group: 1}\n",
			[]string{`policy.yaml:2: protect[0].nexthop.group: "1" is not true or false`}},
		{"interface bad glob", "protect:\n  - interface: \"cali[\"\n",
			[]string{`policy.yaml:2: protect[0].interface: "cali[": syntax error in pattern`}},
		{"interface too long", "protect:\n  - interface: averyveryverylongname\n",
			[]string{`policy.yaml:2: protect[0].interface: "averyveryverylongname" is 21 bytes: interface names have at most 15`}},
		{"interface empty", "protect:\n  - interface: \"\"\n",
			[]string{`policy.yaml:2: protect[0].interface: empty: want an interface name glob`}},
		{"comm too long", "protect: [{table: 1}]\nallow:\n  - comm: calico-node-agent\n",
			[]string{`policy.yaml:3: allow[0].comm: "calico-node-agent" is 17 bytes: the kernel truncates a command name to 15, so it would never match: write "calico-node-age"`}},
		{"unit bad glob", "protect: [{table: 1}]\nallow:\n  - unit: \"[a\"\n",
			[]string{`policy.yaml:3: allow[0].unit: "[a": syntax error in pattern`}},
		{"pod bad glob", "protect: [{table: 1}]\nallow:\n  - pod: \"kube-system/\\\\\"\n",
			[]string{`policy.yaml:3: allow[0].pod: "kube-system/\\": syntax error in pattern`}},
		{"cgroup relative", "protect: [{table: 1}]\nallow:\n  - cgroup: kubepods.slice/*\n",
			[]string{`policy.yaml:3: allow[0].cgroup: "kubepods.slice/*": cgroup paths start at the hierarchy's root: /kubepods.slice/*`}},
		{"exe relative", "protect: [{table: 1}]\nallow:\n  - exe: bird\n",
			[]string{`policy.yaml:3: allow[0].exe: "bird": executable paths are absolute (a glob's * does not cross /)`}},
		{"allow unknown key", "protect: [{table: 1}]\nallow:\n  - user: root\n",
			[]string{`policy.yaml:3: allow[0].user: unknown key "user"; known keys: unit, pod, container, cgroup, comm, exe`}},
		{"operations not bool", "protect: [{table: 1}]\noperations: {replace: yes}\n",
			[]string{`policy.yaml:2: operations.replace: "yes" is not true or false`}},
		{"operations unknown", "protect: [{table: 1}]\noperations: {more_specific: true}\n",
			[]string{`policy.yaml:2: operations.more_specific: unknown key "more_specific" (did you mean "more-specific"?); known keys: replace, more-specific`}},
		{"alias", "protect:\n  - table: &t 100\n  - table: *t\n",
			[]string{`policy.yaml:2: protect[0].table: anchors and aliases are not supported: write the value out`,
				`policy.yaml:3: protect[1].table: anchors and aliases are not supported: write the value out`}},
		// yaml.v3 names the line where the construct it could not finish
		// began.
		{"yaml syntax", "protect:\n  - table: 1\n   - table: 2\n",
			[]string{`policy.yaml:1: YAML syntax: did not find expected '-' indicator`}},
		{"yaml syntax tab", "protect:\n\t- table: 1\n",
			[]string{`policy.yaml:2: YAML syntax: found character that cannot start any token`}},
		{"every error at once", "mode: blok\nprotect:\n  - prefix: 10.244.0.0/33\n  - protcol: bird\n  - table: 0\nallow:\n  - comm: calico-node-agent\n",
			[]string{
				`policy.yaml:1: mode: "blok" is not a mode: audit, block, repair or auto`,
				`policy.yaml:3: protect[0].prefix: "10.244.0.0/33" is not a CIDR`,
				`policy.yaml:4: protect[1].protcol: unknown key "protcol" (did you mean "protocol"?); known keys: prefix, interface, table, protocol, rule, nexthop`,
				`policy.yaml:5: protect[2].table: table 0 is unspec, not a table: main is 254`,
				`policy.yaml:7: allow[0].comm: "calico-node-agent" is 17 bytes: the kernel truncates a command name to 15, so it would never match: write "calico-node-age"`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != len(tc.want) {
				t.Errorf("not a *ValidationError of %d errors: %#v", len(tc.want), err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(issueExample), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != path || p.Protect[0].String() != "protect[0] prefix 10.244.0.0/16 ("+path+":3)" {
		t.Errorf("source %q, protect[0] %q", p.Source, p.Protect[0].String())
	}
	if _, err := Load(path + ".missing"); err == nil || !strings.HasPrefix(err.Error(), "reading policy: ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p, err := Parse("policy.yaml", []byte(issueExample+`  - container: "0123456789ab"
  - cgroup: "/kubepods.slice/*"
  - exe: /usr/sbin/bird
  - comm: "true"
  - unit: "*"
operations: {replace: false, more-specific: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	p.Protect = append(p.Protect,
		Protect{Prefix: netip.MustParsePrefix("fd00::/8")},
		Protect{Protocol: 77, HasProtocol: true},
		Protect{Table: 255},
		Protect{Rule: &RuleSelector{}},
		Protect{Rule: &RuleSelector{PriorityMin: 7, PriorityMax: 7, HasPriority: true, Table: 100, Family: event.FamilyInet}},
		Protect{Nexthop: &NexthopSelector{IDMin: 1, IDMax: 4294967295, Groups: true}},
		Protect{Nexthop: &NexthopSelector{}},
	)
	p.Comment = "a header\nof two lines"
	p.Protect[0].Comment = "the pod CIDR"
	p.Allow[0].Comment = "the agent"
	out := p.Marshal()
	back, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !equalPolicies(back, p, false) {
		t.Errorf("round trip changed the policy:\n%s\ngot  %+v\nwant %+v", out, back, p)
	}
	for _, want := range []string{"# a header\n# of two lines\n", "  # the pod CIDR\n  - prefix: 10.244.0.0/16\n", "  # the agent\n  - unit: calico-node.service\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// equalPolicies compares policies, positions only when withPositions
// (Marshal's output has other lines), never comments (Parse does not
// read them) or labels (they name the position).
func equalPolicies(a, b *Policy, withPositions bool) bool {
	if a.Mode != b.Mode || a.Operations != b.Operations || len(a.Protect) != len(b.Protect) || len(a.Allow) != len(b.Allow) {
		return false
	}
	if withPositions && a.Source != b.Source {
		return false
	}
	for i := range a.Protect {
		if !equalProtect(&a.Protect[i], &b.Protect[i], withPositions) {
			return false
		}
	}
	for i := range a.Allow {
		x, y := a.Allow[i], b.Allow[i]
		x.Comment, y.Comment = "", ""
		if !withPositions {
			x.At, y.At, x.Index, y.Index = Where{}, Where{}, 0, 0
		}
		if x != y {
			return false
		}
	}
	return true
}

func equalProtect(a, b *Protect, withPositions bool) bool {
	x, y := *a, *b
	x.Comment, y.Comment, x.label, y.label = "", "", "", ""
	if !withPositions {
		x.At, y.At, x.Index, y.Index = Where{}, Where{}, 0, 0
	}
	return reflect.DeepEqual(x, y)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte("protect:\n  - nexthop: {id: \"1-9\", group: true}\n  - rule: {priority: 5, table: main, family: inet6}\nallow: [{cgroup: /a/*}, {exe: /b}, {container: c}]\noperations: {replace: false}\n"))
	f.Add([]byte("protect: [{interface: \"x\\\\*\"}, {protocol: 255}, {table: 4294967295}, {prefix: \"::/0\"}]\nallow: [{comm: \"yes\"}, {unit: \"\\\"\"}]\n"))
	f.Add([]byte("mode: repair\nprotect:\n- interface: \"a: b\"\n- interface: ' x'\nallow:\n- comm: \"#\"\n- unit: \"~\"\n- pod: \"a\\nb\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a *ValidationError: %#v", err)
			}
			return
		}
		out := p.Marshal()
		back, err := Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("Marshal's output does not parse: %v\n%s", err, out)
		}
		if !equalPolicies(back, p, false) {
			t.Fatalf("round trip changed the policy:\n%s\ngot  %+v\nwant %+v", out, back, p)
		}
	})
}

// TestMarshalQuoting writes values that YAML would read as something else,
// or not at all, unless quoted.
func TestMarshalQuoting(t *testing.T) {
	for _, s := range []string{"#x", "a: b", " lead", "trail ", "~", "null", "yes", "0x1F", "1e3", "-", "- x",
		"'", `"`, `\\`, "é", "a\nb", "@x", "`x", "%x", "!x", "&x", "*", "{x}", "[!x]", ",", "?x", "|", ">"} {
		p := &Policy{Source: "q", Mode: ModeAudit, Operations: Operations{Replace: true},
			Protect: []Protect{{Interface: s}}, Allow: []Allow{{Unit: s}, {Pod: s}, {Container: s}, {Comm: s}}}
		out := p.Marshal()
		back, err := Parse("q", out)
		if err != nil {
			t.Errorf("%q: %v\n%s", s, err, out)
			continue
		}
		if !equalPolicies(back, p, false) {
			t.Errorf("%q: round trip gave %+v\n%s", s, back, out)
		}
	}
}
