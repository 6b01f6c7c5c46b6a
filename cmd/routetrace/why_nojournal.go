//go:build !journal

// Until the journal package is in main, `routetrace why` builds without a
// reader and says so; why_journal.go (-tags journal) is the real one.

package main

import (
	"context"
	"errors"

	"github.com/routetrace/routetrace/event"
)

func readJournal(ctx context.Context, dir string, add func(*event.Event)) (int, error) {
	return 0, errors.New("this routetrace was built without the journal reader (build with -tags journal)")
}
