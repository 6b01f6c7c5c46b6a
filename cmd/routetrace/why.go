package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/forensics"
)

func whyCommand() *cli.Command {
	return &cli.Command{
		Name:      "why",
		Usage:     "why is this address or prefix unreachable: who last changed the routes and rules that cover it",
		ArgsUsage: "ADDRESS|PREFIX",
		Description: "Reads the journal that `routetrace trace` writes and answers in a few lines: the last change to\n" +
			"every route (any table) and rule that covers the address or prefix — its own route, the node's\n" +
			"pod CIDR, the default route, a rule that selects it or that has no address selector — most\n" +
			"specific first; who made it (unit or pod, comm[pid], command line, cgroup, parent), what else\n" +
			"that process removed in the same burst (changes less than a second apart), and for a removal\n" +
			"the kernel made by itself, the request that caused it. For actors it knows (systemd-networkd,\n" +
			"NetworkManager, dhcpcd) it says what to configure so that it does not happen again.\n\n" +
			"A route deleted and added back since is shown as BACK, with who had deleted it.\n\n" +
			"Examples:\n" +
			"  routetrace why 10.244.1.7                 # a pod's address: its /32, the node's /24, the default route\n" +
			"  routetrace why 10.244.1.0/24              # a prefix: routes inside it too\n" +
			"  routetrace why fd00:244::5 --since 6h     # only the last six hours of the journal\n" +
			"  routetrace why 10.244.1.7 --since '2026-11-27 03:00:00'\n" +
			"  routetrace why 10.244.1.7 --output json | jq '.changes[0].last.actor'\n" +
			"  routetrace why 10.244.1.7 --state-dir /srv/routetrace   # a journal kept elsewhere",
		Flags: []cli.Flag{
			stateDirFlag(),
			&cli.StringFlag{Name: "since", Usage: "only changes after this: a duration back from now (6h, 30m) or a time (2026-11-27 03:00:00 in local time, or RFC 3339)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text (a few lines to read) or json (one object, fields stable)"},
		},
		Action: runWhy,
	}
}

func runWhy(c *cli.Context) error {
	args, err := flagsAfterArgs(c)
	if err != nil {
		return err
	}
	// --help after the address (routetrace why 10.244.1.7 --help): the
	// help, as before it, not an answer.
	if c.Bool("help") {
		cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
		return nil
	}
	if len(args) != 1 {
		return fmt.Errorf("why needs one ADDRESS or PREFIX (like 10.244.1.7 or 10.244.1.0/24), got %d arguments; see routetrace why --help", len(args))
	}
	target, err := forensics.ParseTarget(args[0])
	if err != nil {
		return fmt.Errorf("the argument: %w", err)
	}
	output := c.String("output")
	if output != "text" && output != "json" {
		return fmt.Errorf("--output %q: want text or json", output)
	}
	now := time.Now()
	var since time.Time
	if s := c.String("since"); s != "" {
		if since, err = parseWhen(s, now, "--since"); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	inv := forensics.NewInvestigation(target, forensics.Options{Since: since})
	scan, err := scanJournal(ctx, c.String("state-dir"), nil, func(ev *event.Event) error {
		inv.Add(ev)
		return nil
	})
	if err != nil {
		return err
	}
	if d := scan.damageLine(); d != "" {
		// The answer may miss what the damage held: say so beside it.
		fmt.Fprintln(os.Stderr, "why: journal:", d)
	}
	report := inv.Report(now)
	report.Undecodable = int(scan.Undecodable)
	if output == "json" {
		return report.WriteJSON(c.App.Writer)
	}
	return report.WriteText(c.App.Writer)
}

// flagsAfterArgs reads the flags that follow the ADDRESS, as the examples
// write them (routetrace why 10.244.1.7 --since 6h), and returns the
// arguments left: urfave/cli v2 stops reading flags at the first argument
// and hands the rest over as arguments. They are parsed with the command's
// own flag definitions and set in c, so c.String and the rest see them.
func flagsAfterArgs(c *cli.Context) ([]string, error) {
	if c.NArg() < 2 {
		return c.Args().Slice(), nil
	}
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	var args []string
	rest := c.Args().Slice()
	for len(rest) > 0 {
		// flag.Parse stops at an argument too: keep it and go on.
		if err := set.Parse(rest); err != nil {
			return nil, fmt.Errorf("%w; see routetrace %s --help", err, c.Command.Name)
		}
		rest = set.Args()
		if len(rest) > 0 {
			args, rest = append(args, rest[0]), rest[1:]
		}
	}
	var err error
	set.Visit(func(v *flag.Flag) {
		for _, f := range c.Command.Flags {
			// By every name: an alias (-o) has a value of its own in c
			// until urfave/cli copies it, which it did before this.
			if names := f.Names(); err == nil && slices.Contains(names, v.Name) {
				for _, n := range names {
					if err = c.Set(n, v.Value.String()); err != nil {
						break
					}
				}
			}
		}
	})
	return args, err
}
