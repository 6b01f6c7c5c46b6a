// Command routetrace reports every change to the kernel's routes, policy
// rules and nexthops, with the process that made it.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

const defaultMemoryLimit = 40 << 20

func main() {
	app := &cli.App{
		Name:  "routetrace",
		Usage: "who changed the routing state on this node, and when",
		Description: "routetrace attaches eBPF programs to the kernel's routing table code and reports every\n" +
			"route, policy rule and nexthop added, replaced or deleted, with the process that did it\n" +
			"(pid, comm, parent, uid, cgroup, netns), including removals the kernel makes by itself.\n\n" +
			"Start with `sudo routetrace probe` to see what this kernel allows, then `sudo routetrace trace`.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error (logs go to stderr)"},
		},
		Before: func(c *cli.Context) error {
			// A node agent's budget is 64 MiB of RSS; the Go heap is what
			// varies (a flush of 100k routes, the tier-3 route cache), so
			// it gets a soft limit the runtime collects harder near. It is
			// not a cap: past it the runtime only collects more often.
			// GOMEMLIMIT overrides it.
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(defaultMemoryLimit)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Commands: []*cli.Command{traceCommand(), enforceCommand(), historyCommand(), whyCommand(), probeCommand(), benchCommand(), versionCommand(),
			benchExportCommand(), benchClientCommand(), benchUDPCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "routetrace:", err)
		if code, ok := err.(cli.ExitCoder); ok {
			os.Exit(code.ExitCode())
		}
		os.Exit(1)
	}
}
