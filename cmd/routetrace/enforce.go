package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/netnswatch"
	"github.com/routetrace/routetrace/policy"
	"github.com/routetrace/routetrace/rtnl"
)

func enforceCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "mode", Usage: "audit, block or repair: overrides the policy file's mode. Default: the file's, and for auto (or none) " +
			"block where the BPF LSM is active, else repair (routetrace probe says which this kernel allows)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "check the policy and print what it protects and allows, then exit; with --policy auto, print a policy built from this node"},
		&cli.BoolFlag{Name: "release", Usage: "break-glass: remove the kernel's enforcement left pinned by an enforce run (block mode survives routetrace's exit), then exit"},
	}
	for _, f := range traceCommand().Flags {
		if f.Names()[0] == "policy" {
			flags = append(flags, &cli.StringFlag{Name: "policy", Usage: "the enforcement policy (YAML, see README#enforce), or 'auto' with --dry-run to print one built from this node"})
			continue
		}
		flags = append(flags, f)
	}
	return &cli.Command{
		Name:  "enforce",
		Usage: "keep protected routes, rules and nexthops from being changed by anyone but their owners",
		Description: "Traces like `routetrace trace` (same output, filters, journal and export) and judges every change by a policy:\n" +
			"what is protected (prefixes, interfaces, tables, protocols, rules, nexthops) and who may still change it\n" +
			"(units, pods, containers, cgroups, commands, executables). Each judged change carries a verdict:\n" +
			"  audit   changes go through; those the policy refuses are reported as would-block\n" +
			"  block   a BPF LSM program makes the kernel refuse them (the requester gets EPERM), reported as blocked\n" +
			"  repair  where the BPF LSM is not active: the removed route, rule or nexthop is put back at once,\n" +
			"          reported as repaired with how long it was missing; an actor that keeps removing it is backed off\n\n" +
			"The policy is reloaded on SIGHUP and when its file changes; a file that fails to load leaves the\n" +
			"previous policy in force and says why. Block mode stays in force when routetrace exits (the programs\n" +
			"are pinned in /sys/fs/bpf/routetrace): a new enforce run adopts it, --release removes it.\n\n" +
			"Examples:\n" +
			"  sudo routetrace enforce --policy auto --dry-run > policy.yaml   # review and edit it\n" +
			"  sudo routetrace enforce --policy policy.yaml --dry-run           # check it: what it protects now\n" +
			"  sudo routetrace trace --policy policy.yaml                        # audit: what would be refused\n" +
			"  sudo routetrace enforce --policy policy.yaml\n" +
			"  sudo routetrace enforce --policy policy.yaml --mode repair --output json\n" +
			"  sudo routetrace enforce --release                                 # break-glass",
		Flags:  flags,
		Action: runEnforce,
	}
}

func runEnforce(c *cli.Context) error {
	if c.Bool("release") {
		return releaseEnforcement(c)
	}
	path := c.String("policy")
	if path == "" {
		return fmt.Errorf("--policy is required: a policy file, or 'auto' with --dry-run to print one built from this node")
	}
	if path == "auto" {
		if !c.Bool("dry-run") {
			return fmt.Errorf("--policy auto needs --dry-run: it prints a policy built from this node " +
				"(`routetrace enforce --policy auto --dry-run > policy.yaml`), to be reviewed before it is enforced")
		}
		return printAutoPolicy(c)
	}
	p, err := loadPolicy(path)
	if err != nil {
		return err
	}
	mode, why, err := chooseMode(c.String("mode"), p.Mode)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		return printPolicyCheck(c, p, mode, why)
	}
	fmt.Fprintf(os.Stderr, "enforce: mode %s (%s), policy %s: %d protect and %d allow entries\n", mode, why, path, len(p.Protect), len(p.Allow))
	j := newJudgeStage(p, path, mode)
	nsPaths, err := enforcedNamespaces(c.StringSlice("netns"))
	if err != nil {
		return err
	}
	j.namespaces = map[uint32]bool{}
	for _, nsPath := range nsPaths {
		ino, err := rtnl.NetnsInode(nsPath)
		if err != nil {
			return err
		}
		j.namespaces[ino] = true
	}
	j.nsPaths = nsPaths
	switch mode {
	case policy.ModeBlock:
		if err := setupBlock(c, j); err != nil {
			return err
		}
	case policy.ModeRepair:
		if err := setupRepair(c, j); err != nil {
			return err
		}
	}
	return runTraceWith(c, j)
}

// enforcedNamespaces are the namespaces a policy is enforced in: those
// --netns names, else routetrace's own (the node's, where CNIs install
// their routes and rules; a pod's own namespace is its CNI plugin's).
func enforcedNamespaces(netns []string) ([]string, error) {
	if len(netns) == 0 {
		return []string{"/proc/self/ns/net"}, nil
	}
	var paths []string
	for _, arg := range splitAll(netns) {
		path, err := netnswatch.NetnsPath(arg)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// chooseMode resolves --mode, then the file's mode, then auto: block where
// the kernel runs BPF LSM programs, else repair. It says why.
func chooseMode(flag string, file policy.Mode) (policy.Mode, string, error) {
	mode, why := file, "the policy file's"
	if flag != "" {
		mode, why = policy.Mode(flag), "--mode"
	}
	switch mode {
	case policy.ModeAudit, policy.ModeRepair:
		return mode, why, nil
	case policy.ModeBlock:
		if err := blockSupported(); err != nil {
			return "", "", fmt.Errorf("block mode (%s) is not possible on this kernel: %w; use --mode repair (or audit)", why, err)
		}
		return mode, why, nil
	case policy.ModeAuto, "":
		if err := blockSupported(); err != nil {
			return policy.ModeRepair, fmt.Sprintf("auto: block is not possible here (%v)", err), nil
		}
		return policy.ModeBlock, "auto: the BPF LSM is active", nil
	}
	return "", "", fmt.Errorf("--mode %q: want audit, block or repair", flag)
}
