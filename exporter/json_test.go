package exporter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/routetrace/routetrace/event"
)

func jsonLine(t *testing.T, ev *event.Event) string {
	t.Helper()
	var out bytes.Buffer
	j := NewJSONWithOptions(&out, JSONOptions{})
	if err := j.Write(ev); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// stdActor is actor() as encoding/json decodes it.
func stdActor(comm string, pid, uid float64) map[string]any {
	return map[string]any{"pid": pid, "tid": pid, "comm": comm, "ppid": 1.0, "pcomm": "systemd",
		"uid": uid, "cgroup_id": 7890.0, "netns": 4026531840.0}
}

var kernelActor = map[string]any{"pid": 0.0, "tid": 0.0, "comm": "kernel", "kernel": true}

func TestJSONFields(t *testing.T) {
	common := func(op, object, family string, table float64, origin, attach string) map[string]any {
		return map[string]any{"time": "2024-05-01T15:04:05.123456789Z", "op": op, "object": object,
			"family": family, "table": table, "errno": 0.0, "origin": origin, "attach": attach,
			"netns": 4026531840.0}
	}
	with := func(m map[string]any, kv map[string]any) map[string]any {
		m = maps.Clone(m)
		maps.Copy(m, kv)
		return m
	}
	tests := []struct {
		name string
		ev   *event.Event
		want map[string]any
	}{
		{"route delete", routeDelete(), with(common("delete", "route", "inet", 254, "netlink", "fentry"), map[string]any{
			"dst": "10.244.3.0/24", "protocol": "bird", "protocol_num": 12.0, "scope": "global", "type": "unicast",
			"metric": 0.0, "oif": 7.0, "dev": "cali1a2b", "portid": 812.0, "seq": 42.0,
			"actor": stdActor("systemd-network", 812, 101)})},
		{"rule delete", ruleDelete(), with(common("delete", "rule", "inet", 100, "netlink", "fentry"), map[string]any{
			"time": "2024-05-01T15:04:05.124456789Z", "priority": 512.0, "src": "10.244.1.5/32", "action": "lookup",
			"portid": 812.0, "seq": 43.0, "actor": stdActor("systemd-network", 812, 101)})},
		{"failed delete", failedDelete(), with(common("delete", "route", "inet", 254, "netlink", "kprobe"), map[string]any{
			"time": "2024-05-01T15:04:06.001456789Z", "errno": 3.0, "error": "ESRCH",
			"dst": "10.9.9.0/24", "protocol": "unspec", "protocol_num": 0.0, "scope": "nowhere", "metric": 0.0,
			"portid": 4410.0, "seq": 1.0, "actor": stdActor("ip", 4410, 0)})},
		{"kernel delete", kernelDelete(), with(common("delete", "route", "inet6", 254, "kernel", "fentry"), map[string]any{
			"path": "fib_inetaddr_event", "dst": "2001:db8::/64", "gateway": "fe80::1",
			"protocol": "kernel", "protocol_num": 2.0, "scope": "link", "type": "unicast", "metric": 256.0,
			"oif": 3.0, "dev": "eth0", "actor": kernelActor,
			"cause": map[string]any{"object": "address", "op": "delete", "ifindex": 3.0, "prefix": "192.0.2.1/24",
				"actor": stdActor("ip", 4410, 0)}})},
		{"flush", flushRecord(), with(common("flush", "route", "inet", 254, "kernel", "fentry"), map[string]any{
			"path": "fib_table_flush", "count": 1000.0, "actor": kernelActor})},
		{"nexthop", nexthopAdd(), with(common("add", "nexthop", "inet", 0, "netlink", "tracepoint"), map[string]any{
			"gateway": "192.0.2.1", "protocol": "zebra", "protocol_num": 11.0, "oif": 3.0, "dev": "eth0",
			"nexthop_id": 12.0, "portid": 99.0, "seq": 5.0, "actor": stdActor("zebra", 700, 92)})},
		{"rule full", ruleFull(), with(common("add", "rule", "inet6", 0, "netlink", "fentry"), map[string]any{
			"priority": 100.0, "dst": "2001:db8::/32", "iif": "eth0", "oif_name": "vrf-blue",
			"fwmark": 16.0, "fwmask": 255.0, "action": "goto", "goto": 200.0, "actor": stdActor("ip", 4410, 0)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := jsonLine(t, tt.ev)
			if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
				t.Fatalf("not one line: %q", line)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("%v in %s", err, line)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v\nline %s", got, tt.want, line)
			}
		})
	}
}

// The exact bytes pin down field order and number formatting.
func TestJSONExactLine(t *testing.T) {
	want := `{"time":"2024-05-01T15:04:06.001456789Z","op":"delete","object":"route","family":"inet","table":254,"errno":3,"error":"ESRCH","origin":"netlink","attach":"kprobe","netns":4026531840,"dst":"10.9.9.0/24","protocol":"unspec","protocol_num":0,"scope":"nowhere","metric":0,"portid":4410,"seq":1,"actor":{"pid":4410,"tid":4410,"comm":"ip","ppid":1,"pcomm":"systemd","uid":0,"cgroup_id":7890,"netns":4026531840}}` + "\n"
	if got := jsonLine(t, failedDelete()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestJSONUnknownNumbers(t *testing.T) {
	ev := routeDelete()
	ev.Protocol, ev.Scope, ev.Type, ev.Errno, ev.Family = 77, 17, 99, 4000, 0
	var got map[string]any
	if err := json.Unmarshal([]byte(jsonLine(t, ev)), &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"protocol": "77", "protocol_num": 77.0, "scope": "17", "type": "99",
		"error": "E4000", "family": "0"} {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestJSONHostileComm(t *testing.T) {
	ev := routeDelete()
	ev.Actor.Comm = [16]byte{'a', '"', '\\', 0x1b, '[', 0xff, '\n', 0xc3, 0xa9, 0x7f}
	line := jsonLine(t, ev)
	var got struct{ Actor struct{ Comm string } }
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("%v in %s", err, line)
	}
	if want := "a\"\\\x1b[\ufffd\né\x7f"; got.Actor.Comm != want {
		t.Errorf("comm = %q, want %q", got.Actor.Comm, want)
	}
}

func TestJSONFlushEachLine(t *testing.T) {
	var out bytes.Buffer
	j := NewJSONWithOptions(&out, JSONOptions{FlushEachLine: true})
	if err := j.Write(routeDelete()); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 {
		t.Error("line not flushed")
	}
	out.Reset()
	j = NewJSON(&out) // not a terminal: buffered until Close
	if err := j.Write(routeDelete()); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Error("line flushed before Close")
	}
	if err := j.Close(); err != nil || out.Len() == 0 {
		t.Errorf("Close: %v, %d bytes", err, out.Len())
	}
}

func TestJSONWriteAllocs(t *testing.T) {
	j := NewJSONWithOptions(bufio.NewWriter(discard{}), JSONOptions{})
	for _, ev := range []*event.Event{routeDelete(), ruleDelete(), failedDelete(), kernelDelete(), flushRecord(), nexthopAdd(), ruleFull()} {
		_ = j.Write(ev) // warm up
		if n := testing.AllocsPerRun(100, func() { _ = j.Write(ev) }); n != 0 {
			t.Errorf("%s %s: %v allocs per Write", ev.Op, ev.Object, n)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkJSONWrite(b *testing.B) {
	j := NewJSONWithOptions(discard{}, JSONOptions{})
	ev := routeDelete()
	b.ReportAllocs()
	for b.Loop() {
		_ = j.Write(ev)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "systemd-networkd", "a\"b\\c", "\x00\x1f\x7f", "\xff\xfe", "é\u2028", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		q := appendJSONString(nil, s)
		if !json.Valid(q) {
			t.Fatalf("invalid JSON %q for %q", q, s)
		}
		var got string
		if err := json.Unmarshal(q, &got); err != nil {
			t.Fatal(err)
		}
		// Converting to runes replaces each invalid byte with U+FFFD,
		// as the escaper does.
		if want := string([]rune(string(s))); got != want {
			t.Errorf("round trip of %q: got %q, want %q", s, got, want)
		}
		if !utf8.Valid(q) {
			t.Errorf("escaped %q is not UTF-8", q)
		}
	})
}

// TestNamesAsIproute2 pins the names where the sinks' old copy of the
// tables had drifted from rtnl's: errno 95 is EOPNOTSUPP (x/sys says
// ENOTSUP) and route type 11 is xresolve.
func TestNamesAsIproute2(t *testing.T) {
	ev := failedDelete()
	ev.Errno, ev.Type = 95, 11
	var m map[string]any
	if err := json.Unmarshal([]byte(jsonLine(t, ev)), &m); err != nil {
		t.Fatal(err)
	}
	if m["error"] != "EOPNOTSUPP" || m["type"] != "xresolve" {
		t.Errorf("json: error %v, type %v; want EOPNOTSUPP, xresolve", m["error"], m["type"])
	}
	const want = "15:04:06.001  delete  route    xresolve 10.9.9.0/24 table main                       ip[4410] uid=0                 EOPNOTSUPP\n"
	if got := textLine(t, TextOptions{Location: time.UTC}, ev); got != want {
		t.Errorf("text:\n got  %q\n want %q", got, want)
	}
	if got := summaryOf(ev).Detail(); got != "failed: EOPNOTSUPP 1" {
		t.Errorf("summary: %q, want %q", got, "failed: EOPNOTSUPP 1")
	}
}

func TestJSONVerdict(t *testing.T) {
	ev := failedDelete()
	ev.Enforcement = event.Enforcement{Verdict: event.VerdictRepaired, Rule: `protect[0] prefix 10.9.0.0/16 ("p".yaml:3)`,
		Reason: "second try", Missing: 2500 * time.Microsecond}
	want := `,"verdict":"repaired","protected_by":"protect[0] prefix 10.9.0.0/16 (\"p\".yaml:3)","verdict_reason":"second try","missing_us":2500}` + "\n"
	if got := jsonLine(t, ev); !strings.HasSuffix(got, want) {
		t.Errorf("got\n%s\nwant it to end with\n%s", got, want)
	}
	ev.Enforcement = event.Enforcement{Verdict: event.VerdictBlocked}
	if got := jsonLine(t, ev); !strings.HasSuffix(got, `,"verdict":"blocked"}`+"\n") {
		t.Errorf("blocked: got\n%s", got)
	}
}
