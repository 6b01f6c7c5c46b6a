package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// guestSlots caps the QEMU guests running at once on this machine, across
// every vmtest process: `make test` runs the tests, the enforcer and the
// incident as three processes side by side, so that a core freed by one
// (its last kernel done) is taken by another's next kernel instead of
// idling until the slowest phase ends. Each TCG guest keeps one host core
// busy; more guests than cores only make every guest slower, and their
// timeouts fire. A slot is a lock file held with flock: the kernel frees it
// when its holder exits, however it exits.
type guestSlots struct {
	dir string
	n   int
}

// acquire blocks until a slot is free (or ctx ends) and returns the file
// whose lock is the slot; closing it frees the slot.
func (s guestSlots) acquire(ctx context.Context, who string) (*os.File, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the guest slot directory: %w", err)
	}
	waiting := time.Time{}
	for {
		for i := range s.n {
			f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, fmt.Errorf("opening a guest slot: %w", err)
			}
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
				if !waiting.IsZero() {
					slog.Info("guest slot free", "kernel", who, "waited", time.Since(waiting).Round(time.Second))
				}
				return f, nil
			}
			f.Close()
		}
		if waiting.IsZero() {
			waiting = time.Now()
			slog.Info("waiting for a guest slot (another vmtest's guests use the host's cores)", "kernel", who, "slots", s.n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (h *harness) slots() guestSlots {
	return guestSlots{dir: h.cache.path("slots"), n: max(1, h.opts.guestSlots)}
}
