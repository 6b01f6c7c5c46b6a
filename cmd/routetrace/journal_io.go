package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/journal"
)

// eventJournal appends events to a journal the way trace does: each
// encoded by one Encoder (a run of changes by one process encodes it
// once) into one reused buffer. trace, bench's journal mode and
// bench-export write through it, so the bench measures trace's path.
type eventJournal struct {
	j      *journal.Journal
	enc    event.Encoder
	buf    []byte
	errors atomic.Uint64 // appends that failed (read by the metrics endpoint)
}

// append journals ev; the first failure is logged, every one counted.
func (w *eventJournal) append(ev *event.Event) {
	w.buf = w.enc.Append(w.buf[:0], ev)
	if _, err := w.j.Append(ev.Time, w.buf); err != nil {
		if w.errors.Add(1) == 1 {
			slog.Error("journaling a change failed (further failures are counted)", "err", err)
		}
	}
}

// journalScan is what a read of the whole journal saw.
type journalScan struct {
	Read        uint64 // records read
	Undecodable uint64 // records skipped: they did not decode
	First, Last time.Time
	Damage      journal.ReaderStats // damaged regions and gaps the reader skipped
}

// scanJournal reads the journal under stateDir, oldest first. keep, if not
// nil, chooses records by time before they are decoded; add gets each
// decoded event (reused: it must copy what it keeps). A record that does
// not decode is logged, counted and skipped: one damaged or newer-format
// record must not hide the rest.
func scanJournal(ctx context.Context, stateDir string, keep func(time.Time) bool, add func(*event.Event) error) (journalScan, error) {
	var scan journalScan
	dir := filepath.Join(stateDir, "journal")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return scan, fmt.Errorf("no journal at %s: `routetrace trace` (the DaemonSet or systemd unit) writes it while it runs, "+
			"under its --state-dir (default %s); point --state-dir (or ROUTETRACE_STATE_DIR) at the directory it uses", dir, defaultStateDir)
	}
	r, err := journal.OpenReader(dir, 1)
	if err != nil {
		return scan, fmt.Errorf("opening the journal at %s: %w", dir, err)
	}
	defer r.Close()
	var ev event.Event
	for {
		rec, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return scan, fmt.Errorf("reading the journal at %s: %w", dir, err)
		}
		scan.Read++
		if scan.First.IsZero() {
			scan.First = rec.Time
		}
		scan.Last = rec.Time
		if keep != nil && !keep(rec.Time) {
			continue
		}
		if err := event.DecodeBinary(rec.Payload, &ev); err != nil {
			scan.Undecodable++
			slog.Warn("skipping a journal record that does not decode", "seq", rec.Seq, "err", err)
			continue
		}
		if err := add(&ev); err != nil {
			return scan, err
		}
	}
	scan.Damage = r.Stats()
	return scan, nil
}

// damageLine says what the reader skipped, "" when nothing was.
func (s journalScan) damageLine() string {
	d := s.Damage
	if d.Corrupt == 0 && d.Gaps == 0 && s.Undecodable == 0 {
		return ""
	}
	return fmt.Sprintf("%d damaged regions and %d gaps skipped (%d records missing), %d records undecodable",
		d.Corrupt, d.Gaps, d.Missing, s.Undecodable)
}
