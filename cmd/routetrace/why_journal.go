package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/journal"
)

// readJournal decodes every record of the journal in dir, oldest first,
// and hands each event to add (which must copy what it keeps: the event is
// reused). A record that does not decode is counted and skipped, not
// fatal: one torn or newer-format record must not hide the answer.
func readJournal(ctx context.Context, dir string, add func(*event.Event)) (undecodable int, err error) {
	r, err := journal.OpenReader(dir, 0)
	if err != nil {
		return 0, fmt.Errorf("opening the journal at %s: %w", dir, err)
	}
	defer r.Close()
	var ev event.Event
	for {
		rec, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return undecodable, nil
		}
		if err != nil {
			return undecodable, fmt.Errorf("reading the journal at %s: %w", dir, err)
		}
		ev = event.Event{}
		if err := event.DecodeBinary(rec.Payload, &ev); err != nil {
			undecodable++
			continue
		}
		add(&ev)
	}
}
