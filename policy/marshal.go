package policy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/routetrace/routetrace/event"
)

// Marshal writes the policy as YAML that Parse reads back to an equal
// policy (positions and comments aside), every setting spelled out, each
// entry's Comment above it.
func (p *Policy) Marshal() []byte {
	doc := mapNode()
	doc.HeadComment = commentText("routetrace enforcement policy (see README#enforce), from " + p.Source + "\n" + p.Comment)
	addPair(doc, "mode", strNode(string(p.Mode)))

	protect := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range p.Protect {
		item := p.Protect[i].node()
		item.HeadComment = commentText(p.Protect[i].Comment)
		protect.Content = append(protect.Content, item)
	}
	addPair(doc, "protect", protect)

	allow := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range p.Allow {
		item := p.Allow[i].node()
		item.HeadComment = commentText(p.Allow[i].Comment)
		allow.Content = append(allow.Content, item)
	}
	if len(p.Allow) == 0 {
		allow.Style = yaml.FlowStyle
	}
	key := addPair(doc, "allow", allow)
	key.HeadComment = "# who may still change protected state"

	ops := mapNode()
	addPair(ops, "replace", boolNode(p.Operations.Replace))
	addPair(ops, "more-specific", boolNode(p.Operations.MoreSpecific))
	addPair(doc, "operations", ops)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		// Only a node tree yaml cannot write fails, and this one is built
		// from validated values.
		panic(fmt.Sprintf("policy: encoding a policy: %v", err))
	}
	enc.Close()
	return buf.Bytes()
}

func (pr *Protect) node() *yaml.Node {
	n := mapNode()
	switch {
	case pr.Prefix.IsValid():
		addPair(n, "prefix", strNode(pr.Prefix.String()))
	case pr.Interface != "":
		addPair(n, "interface", strNode(pr.Interface))
	case pr.Table != 0:
		addPair(n, "table", plainNode(tableText(pr.Table)))
	case pr.HasProtocol:
		addPair(n, "protocol", plainNode(protocolText(pr.Protocol)))
	case pr.Rule != nil:
		addPair(n, "rule", flowNode(pr.Rule.fields()))
	case pr.Nexthop != nil:
		addPair(n, "nexthop", flowNode(pr.Nexthop.fields()))
	}
	return n
}

func (al *Allow) node() *yaml.Node {
	n := mapNode()
	for _, kv := range [...]struct{ key, value string }{
		{"unit", al.Unit}, {"pod", al.Pod}, {"container", al.Container},
		{"cgroup", al.Cgroup}, {"comm", al.Comm}, {"exe", al.Exe},
	} {
		if kv.value != "" {
			addPair(n, kv.key, strNode(kv.value))
		}
	}
	return n
}

// fields are the selector's set fields as key and text, in file order.
func (r *RuleSelector) fields() [][2]string {
	var out [][2]string
	if r.HasPriority {
		out = append(out, [2]string{"priority", rangeText(r.PriorityMin, r.PriorityMax)})
	}
	if r.Table != 0 {
		out = append(out, [2]string{"table", tableText(r.Table)})
	}
	if r.Family != 0 {
		out = append(out, [2]string{"family", event.FamilyName(r.Family)})
	}
	return out
}

func (n *NexthopSelector) fields() [][2]string {
	var out [][2]string
	if n.IDMin != 0 || n.IDMax != 0 {
		out = append(out, [2]string{"id", rangeText(n.IDMin, n.IDMax)})
	}
	if n.Groups {
		out = append(out, [2]string{"group", "true"})
	}
	return out
}

func rangeText(lo, hi uint32) string {
	if lo == hi {
		return strconv.FormatUint(uint64(lo), 10)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// commentText makes text a YAML comment, one "# " per line.
func commentText(text string) string {
	text = strings.TrimSpace(text)
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight("# "+l, " ")
	}
	return strings.Join(lines, "\n")
}

func mapNode() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

// addPair appends key: value to a mapping and returns the key's node.
func addPair(m *yaml.Node, key string, value *yaml.Node) *yaml.Node {
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
	m.Content = append(m.Content, k, value)
	return k
}

// strNode is a string, quoted by the encoder when it would read as
// something else ("true", "*", "10").
func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// plainNode is a name or number written as is: Parse takes either.
func plainNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: s}
	if _, err := strconv.ParseUint(s, 10, 64); err == nil {
		n.Tag = "!!int"
	} else {
		n.Tag = "!!str"
	}
	return n
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func flowNode(fields [][2]string) *yaml.Node {
	n := mapNode()
	n.Style = yaml.FlowStyle
	for _, kv := range fields {
		if kv[0] == "group" {
			addPair(n, kv[0], boolNode(kv[1] == "true"))
			continue
		}
		addPair(n, kv[0], plainNode(kv[1]))
	}
	return n
}
