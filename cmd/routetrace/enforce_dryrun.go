package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/routetrace/routetrace/nodefacts"
	"github.com/routetrace/routetrace/policy"
)

// printAutoPolicy prints a policy built from the node (--policy auto
// --dry-run), in the first enforced namespace, for a human to review.
func printAutoPolicy(c *cli.Context) error {
	paths, err := enforcedNamespaces(c.StringSlice("netns"))
	if err != nil {
		return err
	}
	h, err := netns.GetFromPath(paths[0])
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", paths[0], err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("opening netlink in %s: %w", paths[0], err)
	}
	defer nl.Close()
	p, err := policy.Auto(policy.AutoOptions{Handle: nl})
	if p != nil {
		if _, werr := c.App.Writer.Write(p.Marshal()); werr != nil {
			return fmt.Errorf("writing the policy: %w", werr)
		}
	}
	return err // ErrNoCNI says what to do
}

// printPolicyCheck prints what a policy protects and allows on this node
// now (--dry-run): each entry with what it matches, so that an entry that
// matches nothing (a typo in a glob) shows before it is relied upon.
func printPolicyCheck(c *cli.Context, p *policy.Policy, mode policy.Mode, why string) error {
	paths, err := enforcedNamespaces(c.StringSlice("netns"))
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "policy %s: valid; mode %s (%s)\n", p.Source, mode, why)
	for _, path := range paths {
		r, err := nodefacts.New(nodefacts.Options{Policy: func() *policy.Policy { return p }, Netns: path, Logger: slog.Default()})
		if err != nil {
			return err
		}
		f, err := r.Resolve()
		r.Close()
		if err != nil {
			return err
		}
		printFacts(w, p, path, &f)
	}
	return nil
}

func printFacts(w io.Writer, p *policy.Policy, path string, f *nodefacts.Facts) {
	fmt.Fprintf(w, "\nin %s (netns %d):\n", path, f.Netns)
	for i := range p.Protect {
		pr := &p.Protect[i]
		var ifaces, routes []string
		for _, it := range f.Interfaces {
			if it.Rule == i {
				ifaces = append(ifaces, it.Name)
			}
		}
		for _, rt := range f.Routes {
			if rt.Rule == i {
				routes = append(routes, fmt.Sprintf("%s table %d", rt.Dst, rt.Table))
			}
		}
		fmt.Fprintf(w, "  %s\n", pr)
		if pr.Interface != "" {
			fmt.Fprintf(w, "      interfaces now: %s\n", listOrNone(ifaces))
		}
		fmt.Fprintf(w, "      routes now: %s\n", listOrNone(routes))
	}
	fmt.Fprintf(w, "  allow entries: %d; cgroups matching them now: %d; executables: %d\n", len(p.Allow), len(f.Cgroups), len(f.Exes))
}

// listOrNone shows up to 8 items and how many more.
func listOrNone(items []string) string {
	switch {
	case len(items) == 0:
		return "none"
	case len(items) > 8:
		return fmt.Sprintf("%s and %d more", strings.Join(items[:8], ", "), len(items)-8)
	}
	return strings.Join(items, ", ")
}
