package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/routetrace/routetrace/enrich"
	"github.com/routetrace/routetrace/networkd"
)

// cniLinks names this namespace's links that a CNI plugin made, with the
// plugin: "cali1a2b3c (calico)".
func cniLinks() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	configured, _ := enrich.ConfiguredCNI("/etc/cni/net.d")
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if cni := enrich.ClassifyLinkFor(configured, a.Name, l.Type()); cni != "" {
			out = append(out, fmt.Sprintf("%s (%s)", a.Name, cni))
		}
	}
	return out, nil
}

// printNetworkdCheck inspects this node's networkd and CNI links, and
// prints the verdict (printNetworkdReport).
func printNetworkdCheck(w io.Writer) {
	links, err := cniLinks()
	printNetworkdReport(w, networkd.Inspect(networkd.Options{}), links, err)
}

// printNetworkdReport says whether systemd-networkd here removes what it
// did not configure when it starts (a restart, an upgrade), and the
// drop-in that stops it.
func printNetworkdReport(w io.Writer, r *networkd.Report, links []string, linksErr error) {
	fmt.Fprintf(w, "\nsystemd-networkd (removes foreign routes and rules when it starts?):\n")
	if !r.Installed {
		fmt.Fprintf(w, "  not installed: nothing to do\n")
		return
	}
	state := "installed, not running (a start applies the settings below)"
	if r.Pid != 0 {
		state = fmt.Sprintf("running (pid %d)", r.Pid)
	}
	version := r.VersionOf
	if r.Version != 0 {
		version = fmt.Sprintf("systemd %d", r.Version)
	}
	fmt.Fprintf(w, "  %-33s %s, %s\n", "state", state, version)
	for _, s := range []networkd.Setting{r.Routes, r.Rules} {
		fmt.Fprintf(w, "  %-33s %s\n", s.Name, settingText(s, r.Version))
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	if !r.Removes() {
		fmt.Fprintf(w, "  foreign routes and rules are kept: a restart does not remove the CNI's\n")
		return
	}
	switch {
	case linksErr != nil:
		fmt.Fprintf(w, "  CNI links         unknown (%v)\n", linksErr)
	case len(links) == 0:
		fmt.Fprintf(w, "  no CNI links here yet: once a CNI plugin installs routes, a restart of networkd removes them\n")
	default:
		fmt.Fprintf(w, "  AFFECTED: a restart of systemd-networkd (an upgrade restarts it) removes the routes and rules\n"+
			"  the CNI installed for %s\n", strings.Join(links, ", "))
	}
	fmt.Fprintf(w, "  fix: write %s:\n", networkd.DropInPath)
	for _, l := range strings.Split(strings.TrimSuffix(networkd.DropIn, "\n"), "\n") {
		fmt.Fprintf(w, "    %s\n", l)
	}
	fmt.Fprintf(w, "  then restart systemd-networkd at a quiet moment: it reads the file when it starts, and that\n"+
		"  start already keeps foreign routes and rules (`routetrace trace` shows any it still removes)\n")
}

func settingText(s networkd.Setting, version int) string {
	if !s.Offered {
		return fmt.Sprintf("not in systemd %d (the setting, and the removal it governs, came with %d)", version, s.Since)
	}
	v := "no"
	if s.On {
		v = "yes"
	}
	if s.Where == "" {
		return v + " (the default)"
	}
	return v + " (" + s.Where + ")"
}
