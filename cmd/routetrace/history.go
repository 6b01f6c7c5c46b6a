package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/journal"
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
	dir := filepath.Join(c.String("state-dir"), "journal")
	r, err := openJournalReader(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	var (
		ev                 event.Event
		shown, read, undec uint64
		first, last        time.Time
	)
	for {
		rec, err := r.Next(c.Context)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the journal in %s: %w", dir, err)
		}
		read++
		if first.IsZero() {
			first = rec.Time
		}
		last = rec.Time
		// The record's time is the event's: skip without decoding.
		if (!since.IsZero() && rec.Time.Before(since)) || (!until.IsZero() && !rec.Time.Before(until)) {
			continue
		}
		if err := event.DecodeBinary(rec.Payload, &ev); err != nil {
			undec++
			slog.Warn("skipping a journal record that does not decode", "seq", rec.Seq, "err", err)
			continue
		}
		if !filter.Match(&ev) {
			continue
		}
		shown++
		if err := sink.Write(&ev); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	st := r.Stats()
	span := "empty"
	if read > 0 {
		span = fmt.Sprintf("%s to %s", first.Local().Format(time.DateTime), last.Local().Format(time.DateTime))
	}
	fmt.Fprintf(os.Stderr, "history: %d of %d journaled changes shown (journal %s: %s)", shown, read, dir, span)
	if st.Corrupt > 0 || st.Gaps > 0 || undec > 0 {
		fmt.Fprintf(os.Stderr, "; %d damaged regions and %d gaps skipped (%d records missing), %d records undecodable", st.Corrupt, st.Gaps, st.Missing, undec)
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

// openJournalReader opens the journal for reading, saying what writes it
// when it is not there.
func openJournalReader(dir string) (*journal.Reader, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no journal at %s: `routetrace trace` (the DaemonSet or systemd unit) writes it there; "+
			"use --state-dir if it runs with another, or ROUTETRACE_STATE_DIR", dir)
	}
	r, err := journal.OpenReader(dir, 1)
	if err != nil {
		return nil, fmt.Errorf("opening the journal: %w", err)
	}
	return r, nil
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
