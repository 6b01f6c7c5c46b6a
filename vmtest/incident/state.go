package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// snapshot is what `ip` shows of routes, rules, addresses and links at one
// moment, keyed so that a routetrace event of the same object gets the
// same key (see routeKey and ruleKey).
type snapshot struct {
	routes map[string]string // key -> the ip -j object, for reports
	rules  map[string]string
	addrs  map[string]bool // "ifindex family local/len"
	links  map[string]int  // name -> ifindex
}

func (s *snapshot) objects() map[string]string {
	m := make(map[string]string, len(s.routes)+len(s.rules))
	for k, v := range s.routes {
		m[k] = v
	}
	for k, v := range s.rules {
		m[k] = v
	}
	return m
}

func ipJSON(args ...string) ([]json.RawMessage, error) {
	out, err := exec.Command("ip", append([]string{"-j"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return nil, fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
	}
	var objs []json.RawMessage
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &objs); err != nil {
		return nil, fmt.Errorf("parsing ip %s: %w", strings.Join(args, " "), err)
	}
	return objs, nil
}

// ipRoute is one object of `ip -d -N -j route show table all`: -N makes table,
// protocol and type numbers, as routetrace's *_num fields and our keys use.
type ipRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Table    string `json:"table"`
	Protocol string `json:"protocol"`
	Metric   uint32 `json:"metric"`
	Prefsrc  string `json:"prefsrc"`
}

type ipRule struct {
	Priority uint32 `json:"priority"`
	Src      string `json:"src"`
	SrcLen   *int   `json:"srclen"`
	Dst      string `json:"dst"`
	DstLen   *int   `json:"dstlen"`
	Iif      string `json:"iif"`
	Oif      string `json:"oif"`
	Table    string `json:"table"`
}

type ipLink struct {
	Ifindex  int    `json:"ifindex"`
	Ifname   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

func takeSnapshot() (*snapshot, error) {
	s := &snapshot{routes: map[string]string{}, rules: map[string]string{}, addrs: map[string]bool{}, links: map[string]int{}}
	links, err := ipJSON("addr", "show")
	if err != nil {
		return nil, err
	}
	for _, raw := range links {
		var l ipLink
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("parsing ip addr: %w", err)
		}
		s.links[l.Ifname] = l.Ifindex
		for _, a := range l.AddrInfo {
			s.addrs[fmt.Sprintf("%d %s %s/%d", l.Ifindex, a.Family, a.Local, a.Prefixlen)] = true
		}
	}
	for _, fam := range []string{"inet", "inet6"} {
		flag := map[string]string{"inet": "-4", "inet6": "-6"}[fam]
		// -d: every attribute ip knows, so that a route or rule put back
		// (enforce-repair) compares equal only when it is identical.
		routes, err := ipJSON(flag, "-d", "-N", "route", "show", "table", "all")
		if err != nil {
			return nil, err
		}
		for _, raw := range routes {
			var r ipRoute
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fmt.Errorf("parsing ip route: %w", err)
			}
			k, err := r.key(fam, s.links)
			if err != nil {
				return nil, err
			}
			s.routes[k] = string(raw)
		}
		rules, err := ipJSON(flag, "-d", "-N", "rule", "show")
		if err != nil {
			return nil, err
		}
		for _, raw := range rules {
			var r ipRule
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fmt.Errorf("parsing ip rule: %w", err)
			}
			k, err := r.key(fam)
			if err != nil {
				return nil, err
			}
			s.rules[k] = string(raw)
		}
	}
	return s, nil
}

// deviceless route types: blackhole, unreachable, prohibit, throw. IPv6
// shows them on lo; routetrace may or may not name a device, so the key
// leaves the device out for them.
func devicelessType(t int) bool { return t >= 6 && t <= 9 }

var routeTypeNums = map[string]int{
	"": 1, "unspec": 1, "unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5,
	"blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9, "nat": 10, "xresolve": 11,
}

// routeKey names a route the way the kernel tells routes apart: family,
// table, type, destination, metric, and the output device.
func routeKey(family string, table, typ int, dst netip.Prefix, metric uint32, oif int) string {
	if devicelessType(typ) {
		oif = 0
	}
	return fmt.Sprintf("route %s table=%d type=%d dst=%s metric=%d oif=%d", family, table, typ, dst.Masked(), metric, oif)
}

func (r ipRoute) key(family string, links map[string]int) (string, error) {
	table := 254
	if r.Table != "" {
		t, err := strconv.Atoi(r.Table)
		if err != nil {
			return "", fmt.Errorf("route table %q is not a number", r.Table)
		}
		table = t
	}
	typ := 1
	if r.Type != "" {
		t, err := strconv.Atoi(r.Type)
		if err != nil {
			return "", fmt.Errorf("route type %q is not a number", r.Type)
		}
		typ = t
	}
	dst, err := parsePrefix(r.Dst, family)
	if err != nil {
		return "", err
	}
	return routeKey(family, table, typ, dst, r.Metric, links[r.Dev]), nil
}

// parsePrefix reads ip's destination: "default", a bare address (a host
// route) or a prefix.
func parsePrefix(s, family string) (netip.Prefix, error) {
	if s == "" || s == "default" || s == "all" {
		if family == "inet6" {
			return netip.MustParsePrefix("::/0"), nil
		}
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	}
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func ruleKey(family string, prio uint32, src, dst string, iif, oif string, table int) string {
	return fmt.Sprintf("rule %s prio=%d src=%s dst=%s iif=%s oif=%s table=%d", family, prio, src, dst, iif, oif, table)
}

func (r ipRule) key(family string) (string, error) {
	table := 0
	if r.Table != "" {
		t, err := strconv.Atoi(r.Table)
		if err != nil {
			return "", fmt.Errorf("rule table %q is not a number", r.Table)
		}
		table = t
	}
	prefix := func(addr string, l *int) (string, error) {
		if addr == "" || addr == "all" {
			return "", nil
		}
		p, err := parsePrefix(addr, family)
		if err != nil {
			return "", err
		}
		if l != nil {
			p = netip.PrefixFrom(p.Addr(), *l)
		}
		return p.Masked().String(), nil
	}
	src, err := prefix(r.Src, r.SrcLen)
	if err != nil {
		return "", err
	}
	dst, err := prefix(r.Dst, r.DstLen)
	if err != nil {
		return "", err
	}
	return ruleKey(family, r.Priority, src, dst, r.Iif, r.Oif, table), nil
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
