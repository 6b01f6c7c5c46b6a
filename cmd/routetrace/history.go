package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/event"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "show the changes the node's journal recorded: the forensic path when nobody was watching",
		Description: "Reads <state-dir>/journal, written by every `routetrace trace` (the DaemonSet or unit in\n" +
			"particular), and prints the changes that match, oldest first, exactly as `trace` printed them:\n" +
			"the same filters, the same text and JSON. It reads while a tracer writes, and needs no BPF.\n\n" +
			"Examples:\n" +
			"  sudo routetrace history --since 6h --dst 10.244.0.0/16 --op delete\n" +
			"  sudo routetrace history --since 2026-11-27T03:00:00Z --until 2026-11-27T03:10:00Z --unit systemd-networkd.service\n" +
			"  sudo routetrace history --cni calico --output json | jq .actor.cmdline\n" +
			"  sudo routetrace why 10.244.1.7     # the last change to what routes that address, and who made it",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json (the same lines as trace prints)"},
			&cli.StringFlag{Name: "color", Value: "auto", Usage: "auto, always or never (text output)"},
			&cli.StringFlag{Name: "since", Usage: "only changes at or after this time: a duration ago (6h, 30m) or a time (2026-11-27T03:00:00Z, '2026-11-27 03:00')"},
			&cli.StringFlag{Name: "until", Usage: "only changes before this time (same forms as --since)"},
			stateDirFlag(),
		}, filterFlags()...),
		Action: runHistory,
	}
}

func runHistory(c *cli.Context) error {
	filter, err := parseFilter(c)
	if err != nil {
		return err
	}
	now := time.Now()
	since, err := parseWhen(c.String("since"), now, "--since")
	if err != nil {
		return err
	}
	until, err := parseWhen(c.String("until"), now, "--until")
	if err != nil {
		return err
	}
	sink, err := newSink(c)
	if err != nil {
		return err
	}
	var shown uint64
	// The record's time is the event's: records outside the window are
	// skipped without being decoded.
	inWindow := func(t time.Time) bool {
		return (since.IsZero() || !t.Before(since)) && (until.IsZero() || t.Before(until))
	}
	scan, err := scanJournal(c.Context, c.String("state-dir"), inWindow, func(ev *event.Event) error {
		if !filter.Match(ev) {
			return nil
		}
		shown++
		if err := sink.Write(ev); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	span := "empty"
	if scan.Read > 0 {
		span = fmt.Sprintf("%s to %s", scan.First.Local().Format(time.DateTime), scan.Last.Local().Format(time.DateTime))
	}
	fmt.Fprintf(os.Stderr, "history: %d of %d journaled changes shown (journal %s: %s)", shown, scan.Read,
		filepath.Join(c.String("state-dir"), "journal"), span)
	if d := scan.damageLine(); d != "" {
		fmt.Fprintf(os.Stderr, "; %s", d)
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

// parseWhen reads --since/--until: "" (no bound), a duration before now,
// or an absolute time.
func parseWhen(s string, now time.Time, flag string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateTime, "2006-01-02 15:04", time.DateOnly} {
		loc := time.Local
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: want a duration ago (6h, 90m) or a time (2026-11-27T03:00:00Z, '2026-11-27 03:00', 2026-11-27)", flag, s)
}
