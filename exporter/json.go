package exporter

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/routetrace/routetrace/event"
)

// JSONOptions tunes the JSON-lines sink.
type JSONOptions struct {
	// FlushEachLine hands every line to the writer at once, for a reader
	// watching live (a terminal, a pipe into jq). Otherwise lines wait in a
	// buffer until it fills or Close, which a million-route flush needs.
	FlushEachLine bool
}

// JSON writes one JSON object per event and line. Its field names are a
// public interface: add fields, never rename them.
type JSON struct {
	w    *bufio.Writer
	opts JSONOptions
	// line and addr are reused for every event so that Write allocates
	// nothing once they have grown.
	line []byte
	addr []byte
}

// NewJSON returns a JSON-lines sink on w that flushes each line when w is a
// terminal. Close flushes but does not close w.
func NewJSON(w io.Writer) *JSON {
	return NewJSONWithOptions(w, JSONOptions{FlushEachLine: IsTerminal(w)})
}

// NewJSONWithOptions returns a JSON-lines sink on w.
func NewJSONWithOptions(w io.Writer, opts JSONOptions) *JSON {
	return &JSON{w: bufio.NewWriterSize(w, 64<<10), opts: opts, line: make([]byte, 0, 1024), addr: make([]byte, 0, 64)}
}

// Write writes ev as one line.
func (j *JSON) Write(ev *event.Event) error {
	j.line = j.appendEvent(j.line[:0], ev)
	if _, err := j.w.Write(j.line); err != nil {
		return fmt.Errorf("writing json line: %w", err)
	}
	if j.opts.FlushEachLine {
		if err := j.w.Flush(); err != nil {
			return fmt.Errorf("flushing json line: %w", err)
		}
	}
	return nil
}

// Close flushes buffered lines.
func (j *JSON) Close() error {
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("flushing json lines: %w", err)
	}
	return nil
}

// timeLayout is RFC 3339 with all nine digits, so lines sort as text and
// line up in a column.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func (j *JSON) appendEvent(b []byte, ev *event.Event) []byte {
	b = append(b, `{"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","op":"`...)
	b = append(b, ev.Op.String()...)
	b = append(b, `","object":"`...)
	b = append(b, ev.Object.String()...)
	b = append(b, `","family":"`...)
	if n := event.FamilyName(ev.Family); n != "" {
		b = append(b, n...)
	} else {
		b = strconv.AppendUint(b, uint64(ev.Family), 10)
	}
	b = append(b, '"')
	b = appendUintField(b, "table", uint64(ev.Table))
	b = appendIntField(b, "errno", int64(ev.Errno))
	if ev.Errno != 0 {
		b = appendKey(b, "error")
		b = event.AppendErrno(append(b, '"'), ev.Errno)
		b = append(b, '"')
	}
	b = appendStrField(b, "origin", ev.Origin.String())
	if ev.Path != event.PathNone {
		b = appendStrField(b, "path", ev.Path.String())
	}
	b = appendStrField(b, "attach", ev.Attach.String())
	b = appendUintField(b, "netns", uint64(ev.Netns))

	switch {
	case ev.Op == event.OpFlush:
		b = appendUintField(b, "count", uint64(ev.Count))
	case ev.Object == event.ObjectRule:
		b = j.appendRule(b, ev)
	case ev.Object == event.ObjectNexthop:
		b = j.appendNexthop(b, ev)
	default:
		b = j.appendRoute(b, ev)
	}

	if ev.Portid != 0 {
		b = appendUintField(b, "portid", uint64(ev.Portid))
	}
	if ev.Seq != 0 {
		b = appendUintField(b, "seq", uint64(ev.Seq))
	}
	b = appendKey(b, "actor")
	b = appendActor(b, &ev.Actor)
	if c := &ev.Cause; c.Valid {
		b = append(b, `,"cause":{"object":"`...)
		b = append(b, c.Object.String()...)
		b = append(b, `","op":"`...)
		b = append(b, c.Op.String()...)
		b = append(b, `","ifindex":`...)
		b = strconv.AppendUint(b, uint64(c.Ifindex), 10)
		if c.Prefix.IsValid() {
			b = j.appendPrefixField(b, "prefix", c.Prefix)
		}
		b = appendKey(b, "actor")
		b = appendActor(b, &c.Actor)
		b = append(b, '}')
	}
	b = appendVictim(b, &ev.Victim)
	b = appendEnforcement(b, &ev.Enforcement)
	return append(b, "}\n"...)
}

// appendEnforcement writes a policy's verdict, when one was given:
// "verdict", the protect entry ("protected_by"), why ("verdict_reason")
// and, for repairs, how long the state was gone ("missing_us").
func appendEnforcement(b []byte, f *event.Enforcement) []byte {
	if f.Verdict == event.VerdictNone {
		return b
	}
	b = appendStrField(b, "verdict", f.Verdict.String())
	b = appendOptString(b, "protected_by", f.Rule)
	b = appendOptString(b, "verdict_reason", f.Reason)
	if f.Verdict == event.VerdictRepaired {
		b = appendUintField(b, "missing_us", uint64(f.Missing.Microseconds()))
	}
	return b
}

func (j *JSON) appendRoute(b []byte, ev *event.Event) []byte {
	if ev.Dst.IsValid() {
		b = j.appendPrefixField(b, "dst", ev.Dst)
	}
	if ev.Src.IsValid() {
		b = j.appendPrefixField(b, "src", ev.Src)
	}
	if ev.Gateway.IsValid() {
		b = j.appendAddrField(b, "gateway", ev.Gateway)
	}
	b = appendProtocol(b, ev.Protocol)
	b = appendKey(b, "scope")
	b = append(append(b, '"'), event.ScopeName(ev.Scope)...)
	b = append(b, '"')
	if ev.Type != 0 {
		b = appendKey(b, "type")
		b = append(append(b, '"'), event.RouteTypeName(ev.Type)...)
		b = append(b, '"')
	}
	b = appendUintField(b, "metric", uint64(ev.Priority))
	return appendLinkNexthop(b, ev)
}

func (j *JSON) appendRule(b []byte, ev *event.Event) []byte {
	b = appendUintField(b, "priority", uint64(ev.Priority))
	if ev.Src.IsValid() {
		b = j.appendPrefixField(b, "src", ev.Src)
	}
	if ev.Dst.IsValid() {
		b = j.appendPrefixField(b, "dst", ev.Dst)
	}
	if n := ev.IifName.Bytes(); len(n) > 0 {
		b = appendKey(b, "iif")
		b = appendJSONString(b, n)
	}
	if n := ev.OifName.Bytes(); len(n) > 0 {
		b = appendKey(b, "oif_name")
		b = appendJSONString(b, n)
	}
	if ev.FwMark != 0 {
		b = appendUintField(b, "fwmark", uint64(ev.FwMark))
	}
	if ev.FwMask != 0 {
		b = appendUintField(b, "fwmask", uint64(ev.FwMask))
	}
	if ev.Action != event.RuleActionUnspec {
		b = appendKey(b, "action")
		name, _ := event.RuleActionName(ev.Action)
		b = append(append(b, '"'), name...)
		b = append(b, '"')
	}
	if ev.Goto != 0 {
		b = appendUintField(b, "goto", uint64(ev.Goto))
	}
	return b
}

// appendNexthop writes a nexthop object: its id is nexthop_id, a group sets
// multipath, and a blackhole nexthop has type blackhole.
func (j *JSON) appendNexthop(b []byte, ev *event.Event) []byte {
	if ev.Gateway.IsValid() {
		b = j.appendAddrField(b, "gateway", ev.Gateway)
	}
	b = appendProtocol(b, ev.Protocol)
	if ev.Type != 0 {
		b = appendKey(b, "type")
		b = append(append(b, '"'), event.RouteTypeName(ev.Type)...)
		b = append(b, '"')
	}
	return appendLinkNexthop(b, ev)
}

func appendProtocol(b []byte, p uint8) []byte {
	b = appendKey(b, "protocol")
	b = append(append(b, '"'), event.ProtocolName(p)...)
	b = append(b, '"')
	return appendUintField(b, "protocol_num", uint64(p))
}

func appendLinkNexthop(b []byte, ev *event.Event) []byte {
	if ev.Oif != 0 {
		b = appendUintField(b, "oif", uint64(ev.Oif))
	}
	if n := ev.Dev.Bytes(); len(n) > 0 {
		b = appendKey(b, "dev")
		b = appendJSONString(b, n)
	}
	if ev.NexthopID != 0 {
		b = appendUintField(b, "nexthop_id", uint64(ev.NexthopID))
	}
	if ev.Multipath {
		b = append(b, `,"multipath":true`...)
	}
	return b
}

// appendActor writes the actor object. pid is the process (Tgid) and tid
// the thread (Pid), the names a user knows from ps, not the kernel's.
func appendActor(b []byte, a *event.Actor) []byte {
	if a.Unknown() {
		return appendUnknownActor(b, a)
	}
	b = append(b, `{"pid":`...)
	b = strconv.AppendUint(b, uint64(a.Tgid), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(a.Pid), 10)
	b = appendKey(b, "comm")
	comm := a.Comm.Bytes()
	if a.Kernel && len(comm) == 0 {
		b = append(b, `"kernel"`...)
	} else {
		b = appendJSONString(b, comm)
	}
	if a.PPid != 0 {
		b = appendUintField(b, "ppid", uint64(a.PPid))
	}
	if n := a.PComm.Bytes(); len(n) > 0 {
		b = appendKey(b, "pcomm")
		b = appendJSONString(b, n)
	}
	// uid 0 is root, a value worth showing, except for the kernel, which
	// has no user.
	if !a.Kernel {
		b = appendUintField(b, "uid", uint64(a.UID))
	}
	if a.CgroupID != 0 {
		b = appendUintField(b, "cgroup_id", a.CgroupID)
	}
	if a.Netns != 0 {
		b = appendUintField(b, "netns", uint64(a.Netns))
	}
	if a.Kernel {
		b = append(b, `,"kernel":true`...)
	}
	if p := a.Process; p != nil {
		b = appendProcessFields(b, p)
	}
	return append(b, '}')
}

// appendProcessFields writes the enricher's names of the actor's process into
// the actor object. Unknown fields are left out, never guessed.
func appendProcessFields(b []byte, p *event.Process) []byte {
	b = appendOptString(b, "unit", p.Unit)
	b = appendOptString(b, "exe", p.Exe)
	if len(p.Cmdline) > 0 {
		b = append(appendKey(b, "cmdline"), '[')
		for i, arg := range p.Cmdline {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONStr(b, arg)
		}
		b = append(b, ']')
	}
	b = appendOptString(b, "cgroup", p.Cgroup)
	b = appendOptString(b, "cgroup_hierarchy", p.CgroupHierarchy)
	b = appendOptString(b, "container_id", p.ContainerID)
	b = appendOptString(b, "runtime", p.Runtime)
	if p.Container != nil && p.Container.Pod != nil {
		b = appendKey(b, "pod")
		b = appendPod(b, p.Container.Pod, p.Container)
	} else if p.PodUID != "" {
		b = append(appendKey(b, "pod"), `{"uid":`...)
		b = append(appendJSONStr(b, p.PodUID), '}')
	}
	b = appendOptString(b, "qos", p.QoS)
	b = appendOptString(b, "enrich_error", p.EnrichError)
	return b
}

// appendPod writes {"name","namespace","uid"[,"container","image"]}.
func appendPod(b []byte, p *event.Pod, c *event.Container) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONStr(b, p.Name)
	b = append(b, `,"namespace":`...)
	b = appendJSONStr(b, p.Namespace)
	b = append(b, `,"uid":`...)
	b = appendJSONStr(b, p.UID)
	if c != nil {
		b = appendOptString(b, "container", c.Name)
		b = appendOptString(b, "image", c.Image)
	}
	return append(b, '}')
}

// appendVictim writes what the change hit, when the enricher knows any.
func appendVictim(b []byte, v *event.Victim) []byte {
	if v.Link == nil && v.Pod == nil && v.Pods == 0 {
		return b
	}
	b = append(appendKey(b, "victim"), '{')
	first := len(b)
	if l := v.Link; l != nil {
		b = appendOptString(b, "link", l.Name)
		b = appendOptString(b, "link_kind", l.Kind)
		b = appendOptString(b, "master", l.Master)
		b = appendOptString(b, "cni", l.CNI)
	}
	if v.Pod != nil {
		b = appendPod(appendKey(b, "pod"), v.Pod, nil)
	}
	if v.Pods > 0 {
		b = appendUintField(b, "pods", uint64(v.Pods))
	}
	if len(b) > first && b[first] == ',' {
		// The first field's comma: the object opened just before it.
		b = append(b[:first], b[first+1:]...)
	}
	return append(b, '}')
}

func appendOptString(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONStr(appendKey(b, k), v)
}

// appendJSONStr is appendJSONString for a string, without converting it.
func appendJSONStr(b []byte, s string) []byte {
	return appendJSONString(b, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// appendUnknownActor writes an actor no task was captured for as
// {"unknown":true}: no pid, tid or uid, whose zeros would be read as
// values (uid 0 is root). A field the tracer did learn is kept.
func appendUnknownActor(b []byte, a *event.Actor) []byte {
	b = append(b, `{"unknown":true`...)
	if n := a.Comm.Bytes(); len(n) > 0 {
		b = appendKey(b, "comm")
		b = appendJSONString(b, n)
	}
	if a.CgroupID != 0 {
		b = appendUintField(b, "cgroup_id", a.CgroupID)
	}
	if a.Netns != 0 {
		b = appendUintField(b, "netns", uint64(a.Netns))
	}
	return append(b, '}')
}

func appendKey(b []byte, k string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

func appendUintField(b []byte, k string, v uint64) []byte {
	return strconv.AppendUint(appendKey(b, k), v, 10)
}

func appendIntField(b []byte, k string, v int64) []byte {
	return strconv.AppendInt(appendKey(b, k), v, 10)
}

// appendStrField is for the package's own names, which need no escaping.
func appendStrField(b []byte, k, v string) []byte {
	b = append(appendKey(b, k), '"')
	b = append(b, v...)
	return append(b, '"')
}

// Addresses go through the escaper: an IPv6 zone is arbitrary text.
func (j *JSON) appendPrefixField(b []byte, k string, p netip.Prefix) []byte {
	j.addr = p.AppendTo(j.addr[:0])
	return appendJSONString(appendKey(b, k), j.addr)
}

func (j *JSON) appendAddrField(b []byte, k string, a netip.Addr) []byte {
	j.addr = a.AppendTo(j.addr[:0])
	return appendJSONString(appendKey(b, k), j.addr)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Names from the kernel are
// arbitrary bytes, and strconv.AppendQuote's \x escapes are not JSON: valid
// UTF-8 is copied, control characters become \n-style or \u00XX escapes,
// and each invalid byte becomes \ufffd, as encoding/json does.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				b = append(b, `\ufffd`...)
			}
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
