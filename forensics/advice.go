package forensics

import (
	"fmt"
	"slices"
	"strings"

	"github.com/routetrace/routetrace/event"
)

// Advice is what to configure so that one kind of actor stops removing
// what it removed. Only actors whose behaviour and settings we know get
// any: the option names are checked against their manuals
// (networkd.conf(5), systemd.network(5), NetworkManager.conf(5),
// dhcpcd.conf(5)), never guessed.
type Advice struct {
	// Actor is the kind of actor: "systemd-networkd", "NetworkManager",
	// "dhcpcd".
	Actor string
	// Why is one sentence: what the actor does and which setting makes it.
	Why string
	// Steps are lines to follow, file contents indented by two spaces.
	Steps []string
}

// Kinds of actor the advice knows.
const (
	actorNetworkd       = "systemd-networkd"
	actorNetworkManager = "NetworkManager"
	actorDhcpcd         = "dhcpcd"
)

// actorKind names a known actor by its systemd unit or its comm (the
// kernel keeps 15 bytes of it: systemd-networkd is "systemd-network").
func actorKind(a *event.Actor) string {
	unit := ""
	if a.Process != nil {
		unit = a.Process.Unit
	}
	comm := a.Comm.String()
	switch {
	case unit == "systemd-networkd.service" || comm == "systemd-network":
		return actorNetworkd
	case unit == "NetworkManager.service" || comm == "NetworkManager":
		return actorNetworkManager
	case unit == "dhcpcd.service" || strings.HasPrefix(unit, "dhcpcd@") || comm == "dhcpcd":
		return actorDhcpcd
	}
	return ""
}

// culprit is the removal a change reports (its last change, or the removal
// an add undid) with who is responsible for it; nil when the change
// removed nothing.
func culprit(c *Change) (*event.Event, *Burst) {
	switch {
	case c.Removed():
		return &c.Event, &c.Burst
	case c.Back():
		return &c.Removal.Event, &c.Removal.Burst
	}
	return nil, nil
}

// facts are what the removals by one kind of actor had in common.
type facts struct {
	routes, rules bool // removed routes (itself, not via the kernel), rules
	managedDevs   []string
	cniGlobs      []string
	addresses     []string // "198.18.0.1/24 from nd0"
}

func adviseAll(changes []Change) []Advice {
	byKind := map[string]*facts{}
	var order []string
	for i := range changes {
		ev, b := culprit(&changes[i])
		if ev == nil {
			continue
		}
		kind := actorKind(responsible(ev))
		if kind == "" {
			continue
		}
		f := byKind[kind]
		if f == nil {
			f = &facts{}
			byKind[kind] = f
			order = append(order, kind)
		}
		if b.Routes.Removals() > b.RoutesByKernel {
			f.routes = true
		}
		if b.Rules.Removals() > b.RulesByKernel {
			f.rules = true
		}
		dev := ev.Dev.String()
		if ev.Object == event.ObjectRoute && dev != "" {
			if l := ev.Victim.Link; l != nil && l.CNI != "" {
				f.cniGlobs = appendUnique(f.cniGlobs, interfaceGlob(dev))
			} else if ev.Origin != event.OriginKernel {
				f.managedDevs = appendUnique(f.managedDevs, dev)
			}
		}
		// Only the addresses whose deletion removed these very routes:
		// the burst may have deleted others that broke nothing asked about.
		if c := &ev.Cause; ev.Origin == event.OriginKernel && c.Valid && c.Object == event.ObjectAddr && c.Prefix.IsValid() {
			f.addresses = appendUnique(f.addresses, c.Prefix.String()+" from "+devName(changes, c.Ifindex))
		}
	}
	var out []Advice
	for _, kind := range order {
		f := byKind[kind]
		switch kind {
		case actorNetworkd:
			out = append(out, networkdAdvice(f))
		case actorNetworkManager:
			out = append(out, networkManagerAdvice(f))
		case actorDhcpcd:
			out = append(out, dhcpcdAdvice(f))
		}
	}
	return out
}

func networkdAdvice(f *facts) Advice {
	a := Advice{Actor: actorNetworkd}
	switch {
	case f.routes && f.rules:
		a.Why = "systemd-networkd removes the routes and routing policy rules it did not configure: ManageForeignRoutes= (systemd 246+) and ManageForeignRoutingPolicyRules= (systemd 249+) default to yes."
	case f.routes:
		a.Why = "systemd-networkd removes the routes it did not configure: ManageForeignRoutes= (systemd 246+) defaults to yes."
	case f.rules:
		a.Why = "systemd-networkd removes the routing policy rules it did not configure: ManageForeignRoutingPolicyRules= (systemd 249+) defaults to yes. It removed no routes itself here."
	default:
		a.Why = "systemd-networkd deleted an address, and the kernel removed the routes that used it. ManageForeignRoutes= and ManageForeignRoutingPolicyRules= do not govern addresses."
	}
	if f.routes || f.rules {
		a.Steps = append(a.Steps, "Put in /etc/systemd/networkd.conf, or a drop-in such as /etc/systemd/networkd.conf.d/90-keep-foreign.conf:", "  [Network]")
		if f.routes {
			a.Steps = append(a.Steps, "  ManageForeignRoutes=no")
		}
		if f.rules {
			a.Steps = append(a.Steps, "  ManageForeignRoutingPolicyRules=no")
		}
		a.Steps = append(a.Steps, "networkd reads it when it starts: it applies from networkd's next start.")
	}
	if f.routes && len(f.managedDevs) > 0 {
		a.Steps = append(a.Steps, fmt.Sprintf("Or, for routes on %s, a link networkd manages: declare them in its .network ([Route] sections) so they are networkd's own, "+
			"or set KeepConfiguration=static in its [Network] section (networkd then keeps foreign routes with proto static).", strings.Join(f.managedDevs, ", ")))
	}
	if len(f.cniGlobs) > 0 {
		a.Steps = append(a.Steps, "Keep networkd off the CNI interfaces with a .network such as /etc/systemd/network/10-cni-unmanaged.network:",
			"  [Match]", "  Name="+strings.Join(f.cniGlobs, " "), "  [Link]", "  Unmanaged=yes")
	}
	for _, addr := range f.addresses {
		prefix, dev, _ := strings.Cut(addr, " from ")
		network := dev + "'s .network"
		if strings.HasPrefix(dev, "ifindex ") {
			network = "that link's .network"
		}
		a.Steps = append(a.Steps, fmt.Sprintf("It deleted address %s and the kernel removed the routes that used it: if the address is meant to stay, declare it in %s (Address=%s).", addr, network, prefix))
	}
	return a
}

func networkManagerAdvice(f *facts) Advice {
	a := Advice{Actor: actorNetworkManager, Why: "NetworkManager removes routes on the devices it manages."}
	devices := "interface-name:cali*"
	if len(f.cniGlobs) > 0 {
		var parts []string
		for _, g := range f.cniGlobs {
			parts = append(parts, "interface-name:"+g)
		}
		devices = strings.Join(parts, ";")
	}
	a.Steps = []string{
		"Mark the CNI interfaces unmanaged in /etc/NetworkManager/conf.d/99-cni-unmanaged.conf:",
		"  [keyfile]",
		"  unmanaged-devices=" + devices,
		"then: systemctl reload NetworkManager",
	}
	if len(f.cniGlobs) == 0 {
		a.Steps[0] = "Mark the CNI interfaces unmanaged (use your CNI's interface names; Calico's are shown) in /etc/NetworkManager/conf.d/99-cni-unmanaged.conf:"
	}
	return a
}

func dhcpcdAdvice(f *facts) Advice {
	a := Advice{Actor: actorDhcpcd, Why: "dhcpcd configures every interface it is not told to leave alone."}
	globs := "cali*"
	if len(f.cniGlobs) > 0 {
		globs = strings.Join(f.cniGlobs, " ")
	}
	a.Steps = []string{"Add to /etc/dhcpcd.conf: denyinterfaces " + globs}
	return a
}

// interfaceGlob turns a CNI interface's name into the pattern of its
// kind: cali1a2b3c → cali*. A name without digits (vxlan.calico, weave)
// stays as it is.
func interfaceGlob(dev string) string {
	if i := strings.IndexAny(dev, "0123456789"); i > 0 {
		return dev[:i] + "*"
	}
	return dev
}

// devName names an interface by its index from the changes' routes,
// which carry both; "ifindex N" when none does.
func devName(changes []Change, ifindex uint32) string {
	for i := range changes {
		for _, ev := range []*event.Event{&changes[i].Event, removalEvent(&changes[i])} {
			if ev != nil && ev.Oif == ifindex && ev.Dev[0] != 0 {
				return ev.Dev.String()
			}
		}
	}
	return fmt.Sprintf("ifindex %d", ifindex)
}

func removalEvent(c *Change) *event.Event {
	if c.Removal != nil {
		return &c.Removal.Event
	}
	return nil
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
