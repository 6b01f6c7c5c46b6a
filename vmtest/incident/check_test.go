package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const testNetns = 4026531840

var nd = networkd{pid: 365, cgroup: 1405, cmdline: []string{"/lib/systemd/systemd-networkd"}, exe: "/usr/lib/systemd/systemd-networkd"}

// snap builds a snapshot from ip -N -j objects, as takeSnapshot would.
func snap(t *testing.T, addrs []string, routes map[string][]string, rules map[string][]string) *snapshot {
	t.Helper()
	s := &snapshot{routes: map[string]string{}, rules: map[string]string{}, addrs: map[string]bool{},
		links: map[string]int{"lo": 1, "nd0": 3, "cali1a2b3c": 5}}
	for _, a := range addrs {
		s.addrs[a] = true
	}
	for fam, objs := range routes {
		for _, o := range objs {
			var r ipRoute
			if err := json.Unmarshal([]byte(o), &r); err != nil {
				t.Fatal(err)
			}
			k, err := r.key(fam, s.links)
			if err != nil {
				t.Fatal(err)
			}
			s.routes[k] = o
		}
	}
	for fam, objs := range rules {
		for _, o := range objs {
			var r ipRule
			if err := json.Unmarshal([]byte(o), &r); err != nil {
				t.Fatal(err)
			}
			k, err := r.key(fam)
			if err != nil {
				t.Fatal(err)
			}
			s.rules[k] = o
		}
	}
	return s
}

func events(t *testing.T, lines ...string) []*rtEvent {
	t.Helper()
	var evs []*rtEvent
	for _, l := range lines {
		ev := &rtEvent{line: l}
		if err := json.Unmarshal([]byte(l), ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// Real lines from a 6.12 fentry run, trimmed to the fields that matter.
const (
	delBlackhole = `{"op":"delete","object":"route","family":"inet","table":254,"errno":0,"origin":"netlink","attach":"fentry","netns":4026531840,"dst":"10.244.0.0/26","protocol":"bird","protocol_num":12,"scope":"global","type":"blackhole","metric":0,"actor":{"pid":365,"tid":365,"comm":"systemd-network","uid":0,"cgroup_id":1405,"unit":"systemd-networkd.service","exe":"/usr/lib/systemd/systemd-networkd","cmdline":["/lib/systemd/systemd-networkd"],"cgroup":"/system.slice/systemd-networkd.service"}}`
	delRule      = `{"op":"delete","object":"rule","family":"inet","table":101,"errno":0,"origin":"netlink","attach":"fentry","netns":4026531840,"priority":1536,"src":"10.244.0.5/32","action":"to_tbl","actor":{"pid":365,"tid":365,"comm":"systemd-network","uid":0,"cgroup_id":1405,"unit":"systemd-networkd.service","exe":"/usr/lib/systemd/systemd-networkd","cmdline":["/lib/systemd/systemd-networkd"],"cgroup":"/system.slice/systemd-networkd.service"}}`
	flushed      = `{"op":"delete","object":"route","family":"inet","table":254,"errno":0,"origin":"kernel","path":"fib_inetaddr_event","attach":"fentry","netns":4026531840,"dst":"10.244.1.0/24","gateway":"198.18.0.254","protocol":"bird","protocol_num":12,"scope":"global","type":"unicast","metric":0,"oif":3,"dev":"nd0","actor":{"pid":0,"tid":0,"comm":"kernel","kernel":true},"cause":{"object":"address","op":"delete","ifindex":3,"prefix":"198.18.0.1/24","actor":{"pid":365,"tid":365,"comm":"systemd-network","uid":0,"cgroup_id":1405,"unit":"systemd-networkd.service","exe":"/usr/lib/systemd/systemd-networkd","cmdline":["/lib/systemd/systemd-networkd"],"cgroup":"/system.slice/systemd-networkd.service"}}}`
)

var (
	routeBlackhole = `{"type":"6","dst":"10.244.0.0/26","protocol":"12","flags":[]}`
	routeFlushed   = `{"dst":"10.244.1.0/24","gateway":"198.18.0.254","dev":"nd0","protocol":"12","prefsrc":"198.18.0.1","flags":[]}`
	routeCali      = `{"dst":"10.244.0.5","dev":"cali1a2b3c","protocol":"4","scope":"253","flags":[]}`
	rulePod        = `{"priority":1536,"src":"10.244.0.5","table":"101"}`
)

func TestCheck(t *testing.T) {
	before := snap(t, []string{"3 inet 198.18.0.1/24"},
		map[string][]string{"inet": {routeBlackhole, routeFlushed, routeCali}}, map[string][]string{"inet": {rulePod}})
	after := snap(t, nil, map[string][]string{"inet": {routeCali}}, nil)

	for _, tc := range []struct {
		name  string
		lines []string
		fail  string // substring of the first failure; "" for a pass
	}{
		{"all reported", []string{delBlackhole, delRule, flushed}, ""},
		{"flush missing", []string{delBlackhole, delRule}, "10.244.1.0/24 metric=0 oif=3 removed"},
		{"duplicate", []string{delBlackhole, delBlackhole, delRule, flushed}, "duplicate report"},
		{"wrong pid", []string{strings.Replace(delBlackhole, `"pid":365`, `"pid":1`, 1), delRule, flushed}, "actor is not networkd"},
		{"wrong cgroup in cause", []string{delBlackhole, delRule, strings.Replace(flushed, `"cgroup_id":1405`, `"cgroup_id":1`, 1)}, "cause actor is not networkd"},
		{"survivor deleted", []string{delBlackhole, delRule, flushed,
			`{"op":"delete","object":"route","family":"inet","table":254,"errno":0,"origin":"netlink","netns":4026531840,"dst":"10.244.0.5/32","protocol_num":4,"type":"unicast","metric":0,"oif":5,"actor":{"pid":365,"comm":"systemd-network","cgroup_id":1405,"unit":"systemd-networkd.service","exe":"/usr/lib/systemd/systemd-networkd","cmdline":["/lib/systemd/systemd-networkd"],"cgroup":"/system.slice/systemd-networkd.service"}}`},
			"survived"},
		{"no unit", []string{strings.Replace(delBlackhole, `"unit":"systemd-networkd.service",`, ``, 1), delRule, flushed}, "actor is not networkd"},
		{"other command line in cause", []string{delBlackhole, delRule, strings.Replace(flushed, `["/lib/systemd/systemd-networkd"]`, `["ip","addr","del"]`, 1)}, "cause actor is not networkd"},
		{"other netns ignored", []string{delBlackhole, delRule, flushed, strings.Replace(delBlackhole, `4026531840`, `4026532000`, 1)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &verdict{}
			check(v, events(t, tc.lines...), before, after, nd, testNetns)
			switch {
			case tc.fail == "" && len(v.failures) > 0:
				t.Errorf("failures %q, want none", v.failures)
			case tc.fail != "" && (len(v.failures) == 0 || !strings.Contains(v.failures[0], tc.fail)):
				t.Errorf("failures %q, want one containing %q", v.failures, tc.fail)
			}
			if v.removed != 3 {
				t.Errorf("removed %d, want 3", v.removed)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"default", "inet"}:       "0.0.0.0/0",
		{"default", "inet6"}:      "::/0",
		{"10.244.0.5", "inet"}:    "10.244.0.5/32",
		{"fd00:244::5", "inet6"}:  "fd00:244::5/128",
		{"10.244.0.0/26", "inet"}: "10.244.0.0/26",
	} {
		p, err := parsePrefix(in[0], in[1])
		if err != nil || p.String() != want {
			t.Errorf("parsePrefix(%q, %s) = %v, %v; want %s", in[0], in[1], p, err, want)
		}
	}
}
