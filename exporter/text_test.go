package exporter

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
)

func textLine(t *testing.T, opts TextOptions, ev *event.Event) string {
	t.Helper()
	var out bytes.Buffer
	if err := NewText(&out, opts).Write(ev); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestText(t *testing.T) {
	tests := []struct {
		name string
		ev   *event.Event
		want string
	}{
		{"route delete", routeDelete(),
			"15:04:05.123  delete  route    10.244.3.0/24 dev cali1a2b table main proto bird      systemd-network[812] uid=101   ok"},
		{"rule delete", ruleDelete(),
			"15:04:05.124  delete  rule     pref 512 from 10.244.1.5 lookup 100                   systemd-network[812] uid=101   ok"},
		{"failed delete", failedDelete(),
			"15:04:06.001  delete  route    10.9.9.0/24 table main                                ip[4410] uid=0                 ESRCH"},
		{"address removal", kernelDelete(),
			"15:04:05.123  delete  route    2001:db8::/64 via fe80::1 dev eth0 table main proto kernel scope link metric 256  kernel via fib_inetaddr_event (address 192.0.2.1/24 deleted by ip[4410])  ok"},
		{"flush", flushRecord(),
			"15:04:05.123  flush   route    table main: 1000 routes                               kernel via fib_table_flush     ok"},
		{"link down", linkDownDelete(),
			"15:04:05.123  delete  route    default via 192.0.2.254 dev eth0 table main proto dhcp metric 100  kernel via fib_netdev_event (link 3 down by systemd-network[812])  ok"},
		{"nexthop", nexthopAdd(),
			"15:04:05.123  add     nexthop  id 12 via 192.0.2.1 dev eth0                          zebra[700] uid=92              ok"},
		{"rule selectors", ruleFull(),
			"15:04:05.123  add     rule     pref 100 from all to 2001:db8::/32 iif eth0 oif vrf-blue fwmark 0x10/0xff goto 200  ip[4410] uid=0                 ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textLine(t, TextOptions{Location: time.UTC}, tt.ev); got != tt.want+"\n" {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want+"\n")
			}
		})
	}
}

func TestTextDescriptions(t *testing.T) {
	blackhole := routeDelete()
	blackhole.Type, blackhole.Dev, blackhole.Oif, blackhole.Protocol = 6, event.Name{}, 0, 4
	blackhole.Dst = pfx("10.0.0.0/8")
	host := routeDelete()
	host.Dst, host.Dev, host.Table, host.NexthopID, host.Priority = pfx("10.1.2.3/32"), event.Name{}, 1000, 9, 20
	nhGroup := nexthopAdd()
	nhGroup.Gateway, nhGroup.Dev, nhGroup.Oif, nhGroup.Multipath = ip(""), event.Name{}, 0, true
	nhBlackhole := nexthopAdd()
	nhBlackhole.Gateway, nhBlackhole.Dev, nhBlackhole.Type = ip(""), event.Name{}, 6
	ruleProhibit := ruleDelete()
	ruleProhibit.Action, ruleProhibit.Src, ruleProhibit.FwMark, ruleProhibit.FwMask = 8, pfx("10.0.0.0/8"), 1, 0xffffffff
	ruleUnspec := ruleDelete()
	ruleUnspec.Action, ruleUnspec.Table = 0, 255
	oneRoute := flushRecord()
	oneRoute.Count, oneRoute.Table = 1, 255

	for _, tt := range []struct {
		ev   *event.Event
		want string
	}{
		{blackhole, "blackhole 10.0.0.0/8 table main proto static"},
		{host, "10.1.2.3 oif 7 table 1000 proto bird metric 20 nhid 9"},
		{nhGroup, "id 12 group"},
		{nhBlackhole, "id 12 oif 3 blackhole"},
		{ruleProhibit, "pref 512 from 10.0.0.0/8 fwmark 0x1 prohibit"},
		{ruleUnspec, "pref 512 from 10.244.1.5 lookup local"},
		{oneRoute, "table local: 1 route"},
	} {
		if got := string(appendDescription(nil, tt.ev)); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestTextColor(t *testing.T) {
	got := textLine(t, TextOptions{Color: true, Location: time.UTC}, failedDelete())
	want := "15:04:06.001  \x1b[31mdelete\x1b[0m  route    10.9.9.0/24 table main                                ip[4410] uid=0                 \x1b[31mESRCH\x1b[0m\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	add := nexthopAdd()
	got = textLine(t, TextOptions{Color: true, Location: time.UTC}, add)
	if !strings.Contains(got, "\x1b[32madd\x1b[0m     nexthop") || !strings.HasSuffix(got, "\x1b[2mok\x1b[0m\n") {
		t.Errorf("add line %q", got)
	}
	if got := textLine(t, TextOptions{Location: time.UTC}, add); strings.Contains(got, "\x1b") {
		t.Errorf("colour without Color: %q", got)
	}
}

// A process names itself: its comm must not reach the terminal raw.
func TestTextHostileComm(t *testing.T) {
	ev := failedDelete()
	ev.Actor.Comm = event.Name{0x1b, '[', '2', 'J', 'x', '\\', 0xff, 0xc3, 0xa9}
	got := textLine(t, TextOptions{Location: time.UTC}, ev)
	if !strings.Contains(got, `\x1b[2Jx\x5c\xffé[4410] uid=0`) {
		t.Errorf("got %q", got)
	}
}

func TestTextLocation(t *testing.T) {
	loc := time.FixedZone("X", 2*3600)
	if got := textLine(t, TextOptions{Location: loc}, routeDelete()); !strings.HasPrefix(got, "17:04:05.123  ") {
		t.Errorf("got %q", got)
	}
	if got := NewText(nil, TextOptions{}).opts.Location; got != time.Local {
		t.Errorf("default location %v", got)
	}
}

func TestTextVerdict(t *testing.T) {
	blocked := routeDelete()
	blocked.Errno = 1
	blocked.Enforcement = event.Enforcement{Verdict: event.VerdictBlocked, Rule: "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)"}
	repaired := routeDelete()
	repaired.Enforcement = event.Enforcement{Verdict: event.VerdictRepaired, Rule: "protect[1] interface cali* (policy.yaml:4)",
		Missing: 3217 * time.Microsecond}
	audit := routeDelete()
	audit.Enforcement = event.Enforcement{Verdict: event.VerdictWouldBlock, Rule: "protect[1] interface cali* (policy.yaml:4)",
		Reason: "repair failed: no snapshot\x1b[31m"}
	prefix := "15:04:05.123  delete  route    10.244.3.0/24 dev cali1a2b table main proto bird      systemd-network[812] uid=101   "
	for _, tt := range []struct {
		name string
		ev   *event.Event
		want string
	}{
		{"blocked", blocked, "EPERM  BLOCKED by protect[0] prefix 10.244.0.0/16 (policy.yaml:3)"},
		{"repaired", repaired, "ok  REPAIRED after 3.22ms by protect[1] interface cali* (policy.yaml:4)"},
		// A reason is printed safely: no escape sequence reaches the terminal.
		{"would-block", audit, `ok  WOULD-BLOCK by protect[1] interface cali* (policy.yaml:4): repair failed: no snapshot\x1b[31m`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := textLine(t, TextOptions{Location: time.UTC}, tt.ev); got != prefix+tt.want+"\n" {
				t.Errorf("got\n%q\nwant\n%q", got, prefix+tt.want+"\n")
			}
		})
	}
}
