package policy

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/routetrace/routetrace/event"
)

// FieldError is one thing wrong with a policy file, at the line of the
// offending key or value.
type FieldError struct {
	File  string
	Line  int
	Field string // "protect[2].prefix"; "" for the document itself
	Msg   string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// ValidationError is every error found in a policy file, in file order:
// fixing one at a time would take as many runs as there are mistakes.
type ValidationError struct {
	Errors []FieldError
}

// Error lists each error on its own line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a policy; file names it in messages and in
// Policy.Source. Every error is reported, as a *ValidationError.
func Parse(file string, data []byte) (*Policy, error) {
	ps := parser{file: file}
	p := &Policy{Source: file, Mode: ModeAuto, Operations: Operations{Replace: true}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		ps.errorf(syntaxErrorLine(err), "", "YAML syntax: %s", strings.TrimPrefix(syntaxErrorMsg(err), "yaml: "))
		return nil, ps.result()
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		ps.errorf(1, "protect", "missing: a policy protects at least one thing")
		return nil, ps.result()
	}
	ps.policy(doc.Content[0], p)
	if err := ps.result(); err != nil {
		return nil, err
	}
	p.label()
	return p, nil
}

// parser collects the errors of one file.
type parser struct {
	file string
	errs []FieldError
}

func (ps *parser) errorf(line int, field, format string, args ...any) {
	ps.errs = append(ps.errs, FieldError{File: ps.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (ps *parser) result() error {
	if len(ps.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: ps.errs}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxErrorLine finds the line yaml.v3 names in a syntax error
// ("yaml: line 3: mapping values are not allowed in this context").
func syntaxErrorLine(err error) int {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}

func syntaxErrorMsg(err error) string {
	return yamlLine.ReplaceAllString(err.Error(), "")
}

// The keys of each mapping, in the order Marshal writes them.
var (
	policyKeys     = []string{"mode", "protect", "allow", "operations"}
	protectKeys    = []string{"prefix", "interface", "table", "protocol", "rule", "nexthop"}
	ruleKeys       = []string{"priority", "table", "family"}
	nexthopKeys    = []string{"id", "group"}
	allowKeys      = []string{"unit", "pod", "container", "cgroup", "comm", "exe"}
	operationsKeys = []string{"replace", "more-specific"}
)

// keyValue is one entry of a mapping.
type keyValue struct {
	key   string
	line  int
	value *yaml.Node
}

// mapping checks that n is a mapping with known, unique keys, and returns
// its entries in file order (the unknown and duplicate ones reported and
// left out).
func (ps *parser) mapping(n *yaml.Node, field string, known []string) ([]keyValue, bool) {
	if n.Kind != yaml.MappingNode {
		ps.errorf(n.Line, field, "%s: want a mapping of %s", describe(n), strings.Join(known, ", "))
		return nil, false
	}
	var out []keyValue
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		sub := join(field, name)
		if k.Kind != yaml.ScalarNode {
			ps.errorf(k.Line, field, "%s as a key: keys are names (%s)", describe(k), strings.Join(known, ", "))
			continue
		}
		if !contains(known, name) {
			msg := fmt.Sprintf("unknown key %q; known keys: %s", name, strings.Join(known, ", "))
			if near := nearest(name, known); near != "" {
				msg = fmt.Sprintf("unknown key %q (did you mean %q?); known keys: %s", name, near, strings.Join(known, ", "))
			}
			ps.errorf(k.Line, sub, "%s", msg)
			continue
		}
		if j := indexKey(out, name); j >= 0 {
			ps.errorf(k.Line, sub, "given twice (first at line %d)", out[j].line)
			continue
		}
		if v.Kind == yaml.AliasNode || v.Anchor != "" {
			ps.errorf(v.Line, sub, "anchors and aliases are not supported: write the value out")
			continue
		}
		out = append(out, keyValue{key: name, line: k.Line, value: v})
	}
	return out, true
}

func indexKey(kvs []keyValue, key string) int {
	for i, kv := range kvs {
		if kv.key == key {
			return i
		}
	}
	return -1
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// describe names a node's kind for "want X" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if isNull(n) {
		return "no value"
	}
	return strconv.Quote(n.Value)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// scalar returns n's text, or reports that it is not one.
func (ps *parser) scalar(n *yaml.Node, field, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		ps.errorf(n.Line, field, "%s: want %s", describe(n), want)
		return "", false
	}
	return n.Value, true
}

func (ps *parser) policy(n *yaml.Node, p *Policy) {
	kvs, ok := ps.mapping(n, "", policyKeys)
	if !ok {
		return
	}
	seenProtect := false
	for _, kv := range kvs {
		switch kv.key {
		case "mode":
			if s, ok := ps.scalar(kv.value, "mode", "audit, block, repair or auto"); ok {
				switch m := Mode(s); m {
				case ModeAuto, ModeAudit, ModeBlock, ModeRepair:
					p.Mode = m
				default:
					ps.errorf(kv.value.Line, "mode", "%q is not a mode: audit, block, repair or auto", s)
				}
			}
		case "protect":
			seenProtect = true
			p.Protect = ps.protectList(kv.value)
		case "allow":
			p.Allow = ps.allowList(kv.value)
		case "operations":
			ps.operations(kv.value, &p.Operations)
		}
	}
	if !seenProtect {
		ps.errorf(n.Line, "protect", "missing: a policy protects at least one thing")
	}
}

// sequence returns the items of a list, reporting anything else; null is
// an empty list.
func (ps *parser) sequence(n *yaml.Node, field string) []*yaml.Node {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n.Line, field, "%s: want a list", describe(n))
		return nil
	}
	return n.Content
}

func (ps *parser) protectList(n *yaml.Node) []Protect {
	items := ps.sequence(n, "protect")
	if len(items) == 0 && (n.Kind == yaml.SequenceNode || isNull(n)) {
		ps.errorf(n.Line, "protect", "empty: a policy protects at least one thing")
	}
	out := make([]Protect, 0, len(items))
	for i, item := range items {
		field := fmt.Sprintf("protect[%d]", i)
		pr := Protect{At: Where{File: ps.file, Line: item.Line}, Index: i}
		if kv, ok := ps.selector(item, field, protectKeys); ok {
			ps.protectSelector(kv, join(field, kv.key), &pr)
		}
		out = append(out, pr)
	}
	return out
}

// selector returns the one key of an entry that must have exactly one.
func (ps *parser) selector(n *yaml.Node, field string, known []string) (keyValue, bool) {
	kvs, ok := ps.mapping(n, field, known)
	if !ok {
		return keyValue{}, false
	}
	switch len(kvs) {
	case 1:
		return kvs[0], true
	case 0:
		if len(n.Content) == 0 { // not when every key was wrong: that is reported
			ps.errorf(n.Line, field, "no selector: give one of %s", strings.Join(known, ", "))
		}
	default:
		given := make([]string, len(kvs))
		for i, kv := range kvs {
			given[i] = fmt.Sprintf("%s (line %d)", kv.key, kv.line)
		}
		ps.errorf(n.Line, field, "%d selectors, %s: give one per entry (an entry with several would need all of them to match)",
			len(kvs), strings.Join(given, ", "))
	}
	return keyValue{}, false
}

func (ps *parser) protectSelector(kv keyValue, field string, pr *Protect) {
	v := kv.value
	switch kv.key {
	case "prefix":
		s, ok := ps.scalar(v, field, "a CIDR prefix")
		if !ok {
			return
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			ps.errorf(v.Line, field, "%q is not a CIDR", s)
			return
		}
		if m := pfx.Masked(); m != pfx {
			ps.errorf(v.Line, field, "%q has host bits set: write %s", s, m)
			return
		}
		pr.Prefix = pfx
	case "interface":
		if s, ok := ps.glob(v, field, "an interface name glob"); ok {
			if !hasMeta(s) && len(s) > maxName {
				ps.errorf(v.Line, field, "%q is %d bytes: interface names have at most %d", s, len(s), maxName)
				return
			}
			pr.Interface = s
		}
	case "table":
		if t, ok := ps.table(v, field); ok {
			pr.Table = t
		}
	case "protocol":
		s, ok := ps.scalar(v, field, "a protocol name or number")
		if !ok {
			return
		}
		proto, ok := lookupProtocol(s)
		if !ok {
			ps.errorf(v.Line, field, "%q is not a protocol: give a name from rt_protos (%s) or a number 0-255",
				s, strings.Join(builtinProtocols(), ", "))
			return
		}
		pr.Protocol, pr.HasProtocol = proto, true
	case "rule":
		ps.rule(v, field, pr)
	case "nexthop":
		ps.nexthop(v, field, pr)
	}
}

func (ps *parser) rule(n *yaml.Node, field string, pr *Protect) {
	kvs, ok := ps.mapping(n, field, ruleKeys)
	if !ok {
		return
	}
	sel := &RuleSelector{}
	for _, kv := range kvs {
		sub := join(field, kv.key)
		switch kv.key {
		case "priority":
			if lo, hi, ok := ps.rangeOf(kv.value, sub, 0); ok {
				sel.PriorityMin, sel.PriorityMax, sel.HasPriority = lo, hi, true
			}
		case "table":
			if t, ok := ps.table(kv.value, sub); ok {
				sel.Table = t
			}
		case "family":
			s, ok := ps.scalar(kv.value, sub, "inet or inet6")
			if !ok {
				continue
			}
			switch s {
			case "inet":
				sel.Family = event.FamilyInet
			case "inet6":
				sel.Family = event.FamilyInet6
			default:
				ps.errorf(kv.value.Line, sub, "%q is not a family: inet or inet6", s)
			}
		}
	}
	pr.Rule = sel
}

func (ps *parser) nexthop(n *yaml.Node, field string, pr *Protect) {
	kvs, ok := ps.mapping(n, field, nexthopKeys)
	if !ok {
		return
	}
	sel := &NexthopSelector{}
	for _, kv := range kvs {
		sub := join(field, kv.key)
		switch kv.key {
		case "id":
			// Nexthop ids start at 1: 0 asks the kernel to pick one.
			if lo, hi, ok := ps.rangeOf(kv.value, sub, 1); ok {
				sel.IDMin, sel.IDMax = lo, hi
			}
		case "group":
			if b, ok := ps.boolean(kv.value, sub); ok {
				sel.Groups = b
			}
		}
	}
	pr.Nexthop = sel
}

// rangeOf reads "N" or "A-B" (A <= B), each at least min.
func (ps *parser) rangeOf(n *yaml.Node, field string, min uint32) (lo, hi uint32, ok bool) {
	s, ok := ps.scalar(n, field, `a number or a range "A-B"`)
	if !ok {
		return 0, 0, false
	}
	a, b, isRange := strings.Cut(s, "-")
	lo64, errLo := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	hi64, errHi := lo64, error(nil)
	if isRange {
		hi64, errHi = strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	}
	switch {
	case errLo != nil || errHi != nil:
		ps.errorf(n.Line, field, `%q is not a number or a range "A-B" of numbers 0-4294967295`, s)
	case lo64 > hi64:
		ps.errorf(n.Line, field, "%q is an empty range: write %d-%d", s, hi64, lo64)
	case lo64 < uint64(min):
		ps.errorf(n.Line, field, "%q: the lowest is %d", s, min)
	default:
		return uint32(lo64), uint32(hi64), true
	}
	return 0, 0, false
}

func (ps *parser) table(n *yaml.Node, field string) (uint32, bool) {
	s, ok := ps.scalar(n, field, "a table name or number")
	if !ok {
		return 0, false
	}
	t, ok := lookupTable(s)
	if !ok {
		ps.errorf(n.Line, field, "%q is not a table: give main, local, default, a name from rt_tables or a number 1-4294967295", s)
		return 0, false
	}
	if t == 0 {
		ps.errorf(n.Line, field, "table 0 is unspec, not a table: main is 254")
		return 0, false
	}
	return t, true
}

func (ps *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	s, ok := ps.scalar(n, field, "true or false")
	if !ok {
		return false, false
	}
	if n.ShortTag() == "!!bool" {
		switch strings.ToLower(s) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	ps.errorf(n.Line, field, "%q is not true or false", s)
	return false, false
}

// glob reads a path.Match pattern.
func (ps *parser) glob(n *yaml.Node, field, want string) (string, bool) {
	s, ok := ps.scalar(n, field, want)
	if !ok {
		return "", false
	}
	if s == "" {
		ps.errorf(n.Line, field, "empty: want %s", want)
		return "", false
	}
	if err := event.ValidGlob(s); err != nil {
		ps.errorf(n.Line, field, "%q: %v", s, err)
		return "", false
	}
	return s, true
}

func (ps *parser) allowList(n *yaml.Node) []Allow {
	items := ps.sequence(n, "allow")
	var out []Allow // nil when empty, as when absent
	for i, item := range items {
		field := fmt.Sprintf("allow[%d]", i)
		a := Allow{At: Where{File: ps.file, Line: item.Line}, Index: i}
		if kv, ok := ps.selector(item, field, allowKeys); ok {
			ps.allowSelector(kv, join(field, kv.key), &a)
		}
		out = append(out, a)
	}
	return out
}

func (ps *parser) allowSelector(kv keyValue, field string, a *Allow) {
	v := kv.value
	switch kv.key {
	case "unit":
		a.Unit, _ = ps.glob(v, field, "a systemd unit glob")
	case "pod":
		a.Pod, _ = ps.glob(v, field, "a NAMESPACE/NAME glob")
	case "container":
		a.Container, _ = ps.glob(v, field, "a container name glob or id")
	case "cgroup":
		if s, ok := ps.glob(v, field, "a cgroup path glob"); ok {
			if !strings.HasPrefix(s, "/") {
				ps.errorf(v.Line, field, "%q: cgroup paths start at the hierarchy's root: /%s", s, s)
				return
			}
			a.Cgroup = s
		}
	case "comm":
		if s, ok := ps.glob(v, field, "a command name glob"); ok {
			if !hasMeta(s) && len(s) > maxName {
				ps.errorf(v.Line, field, "%q is %d bytes: the kernel truncates a command name to %d, so it would never match: write %q",
					s, len(s), maxName, s[:maxName])
				return
			}
			a.Comm = s
		}
	case "exe":
		if s, ok := ps.glob(v, field, "an executable path glob"); ok {
			if !strings.HasPrefix(s, "/") {
				ps.errorf(v.Line, field, "%q: executable paths are absolute (a glob's * does not cross /)", s)
				return
			}
			a.Exe = s
		}
	}
}

func (ps *parser) operations(n *yaml.Node, ops *Operations) {
	kvs, _ := ps.mapping(n, "operations", operationsKeys)
	for _, kv := range kvs {
		b, ok := ps.boolean(kv.value, join("operations", kv.key))
		if !ok {
			continue
		}
		switch kv.key {
		case "replace":
			ops.Replace = b
		case "more-specific":
			ops.MoreSpecific = b
		}
	}
}

// maxName is the longest interface or command name the kernel keeps
// (IFNAMSIZ and TASK_COMM_LEN, less the NUL).
const maxName = 15

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nearest returns the known key within two edits of key, for "did you
// mean": a typo, not a different word.
func nearest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
