package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
//
// Longest first: a free slot goes to the waiting guest expected to run
// longest (its duration in the last run, durations.json), across the
// processes, so that the run does not end with one long guest booting
// while the other cores idle. A guest never timed goes first: it may be
// the longest. Waiters announce themselves with a file in waiting/ that
// they hold locked, so that a crashed one is seen as gone.
type guestSlots struct {
	dir string
	n   int
	// job names the run (e.g. incident-summary): durations are recorded
	// per job and guest. "": not recorded, no priority.
	job string
	// first puts this guest before every other, timed or not: one that
	// other runs wait for (the arm64 root file system's second stage).
	first bool
}

// unknownDuration is the expected duration of a guest never timed.
const unknownDuration = 24 * time.Hour

// seedDurations are the guests' durations in a warm make test on this
// project's 2-core machine (a copy of its durations.json): a fresh cache
// orders its guests by them, so that its first run too starts the longest
// ones (arm64's tests, 9 minutes) first instead of in arbitrary order.
// The cache's own durations, once recorded, take their place; a guest in
// neither (a kernel added to kernels.txt since) is taken as the longest.
//
//go:embed durations.json
var seedDurations []byte

// acquire blocks until a slot is free and no longer guest waits (or ctx
// ends) and returns the file whose lock is the slot; closing it frees the
// slot.
func (s guestSlots) acquire(ctx context.Context, who string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Join(s.dir, "waiting"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the guest slot directory: %w", err)
	}
	expect := s.expected(who)
	w, err := s.announce(expect)
	if err != nil {
		return nil, err
	}
	defer func() {
		os.Remove(w.Name())
		w.Close()
	}()
	waiting := time.Time{}
	for {
		if !s.longerWaiting(w.Name(), expect) {
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
		}
		if waiting.IsZero() {
			waiting = time.Now()
			slog.Info("waiting for a guest slot (another vmtest's guests use the host's cores)", "kernel", who, "slots", s.n,
				"expected", expectString(expect))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func expectString(d time.Duration) string {
	if d >= unknownDuration {
		return "not timed yet"
	}
	return d.Round(time.Second).String()
}

// announce makes this waiter's file, waiting/<expected ms>-<pid>-<n>,
// held locked while it waits.
func (s guestSlots) announce(expect time.Duration) (*os.File, error) {
	for n := 0; ; n++ {
		name := filepath.Join(s.dir, "waiting", fmt.Sprintf("%d-%d-%d", expect.Milliseconds(), os.Getpid(), n))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("announcing a guest waiting for a slot: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", name, err)
		}
		return f, nil
	}
}

// longerWaiting reports whether a live waiter other than self expects to
// run longer than expect. A file nobody holds locked is a waiter that
// died: it is removed.
func (s guestSlots) longerWaiting(self string, expect time.Duration) bool {
	dir := filepath.Join(s.dir, "waiting")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		ms, _, ok := strings.Cut(e.Name(), "-")
		other, err := strconv.ParseInt(ms, 10, 64)
		if path == self || !ok || err != nil || time.Duration(other)*time.Millisecond <= expect {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			continue // gone meanwhile
		}
		dead := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
		if dead {
			os.Remove(path)
		}
		f.Close()
		if !dead {
			return true
		}
	}
	return false
}

// durationsFile records how long each job's guests ran, for the next run.
func (s guestSlots) durationsFile() string { return filepath.Join(s.dir, "durations.json") }

// expected is who's duration in the last run of this job, or, never run
// with this cache, in seedDurations.
func (s guestSlots) expected(who string) time.Duration {
	if s.first {
		return 2 * unknownDuration
	}
	if s.job == "" {
		return 0
	}
	key := s.job + "/" + who
	for _, raw := range [][]byte{readOrNil(s.durationsFile()), seedDurations} {
		var d map[string]float64
		if json.Unmarshal(raw, &d) != nil {
			continue // missing or damaged: the next source
		}
		if sec, ok := d[key]; ok {
			return time.Duration(sec * float64(time.Second))
		}
	}
	return unknownDuration
}

func readOrNil(path string) []byte {
	raw, _ := os.ReadFile(path)
	return raw
}

// record stores how long who's guest ran. Processes record under a lock,
// so that none loses another's entry.
func (s guestSlots) record(who string, took time.Duration) {
	if s.job == "" {
		return
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, "durations.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		slog.Warn("recording a guest's duration", "err", err)
		return
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		slog.Warn("recording a guest's duration", "err", err)
		return
	}
	d := map[string]float64{}
	if raw, err := os.ReadFile(s.durationsFile()); err == nil {
		json.Unmarshal(raw, &d) // a damaged file starts afresh
	}
	d[s.job+"/"+who] = took.Seconds()
	raw, _ := json.MarshalIndent(d, "", "  ")
	tmp := s.durationsFile() + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err == nil {
		os.Rename(tmp, s.durationsFile())
	}
}

func (h *harness) slots() guestSlots {
	return guestSlots{dir: h.cache.path("slots"), n: max(1, h.opts.guestSlots), job: h.opts.job()}
}

// job names a run for its guests' durations: the summary it writes
// (vmtest-summary, incident-summary, ...), which make test's runs set.
func (o *options) job() string {
	if o.summaryJSON == "" {
		return ""
	}
	return strings.TrimSuffix(filepath.Base(o.summaryJSON), ".json")
}
