package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestGuestSlots: two slots admit two holders; a third waits until one is
// freed, and gives up when its context ends.
func TestGuestSlots(t *testing.T) {
	s := guestSlots{dir: t.TempDir(), n: 2}
	ctx := context.Background()
	a, err := s.acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if c, err := s.acquire(short, "c"); !errors.Is(err, context.DeadlineExceeded) {
		c.Close()
		t.Fatalf("a third guest got a slot of two: %v", err)
	}
	a.Close()
	c, err := s.acquire(ctx, "c")
	if err != nil {
		t.Fatalf("no slot after one was freed: %v", err)
	}
	c.Close()
}

// TestGuestSlotsLongestFirst: with one slot taken and two guests waiting,
// the freed slot goes to the one that ran longest last time, whichever
// asked first; a guest never timed counts as the longest, and one marked
// first (the second stage) goes before even that.
func TestGuestSlotsLongestFirst(t *testing.T) {
	dir := t.TempDir()
	s := guestSlots{dir: dir, n: 1, job: "tests"}
	s.record("short", 10*time.Second)
	s.record("long", 5*time.Minute)
	if got := s.expected("long"); got != 5*time.Minute {
		t.Fatalf("expected(long) = %v, want 5m (durations.json not read back)", got)
	}
	if got := s.expected("new"); got != unknownDuration {
		t.Fatalf("expected(new) = %v, want unknownDuration", got)
	}
	ctx := context.Background()
	gate := s
	gate.first = true
	for _, pair := range [][2]string{{"short", "long"}, {"long", "short"}, {"long", "new"}, {"new", "gate"}} {
		held, err := s.acquire(ctx, "holder")
		if err != nil {
			t.Fatal(err)
		}
		order := make(chan string, 2)
		for i, who := range pair {
			go func() {
				slots := s
				if who == "gate" {
					slots = gate
				}
				f, err := slots.acquire(ctx, who)
				if err != nil {
					order <- "error: " + err.Error()
					return
				}
				order <- who
				time.Sleep(200 * time.Millisecond)
				f.Close()
			}()
			if i == 0 {
				time.Sleep(300 * time.Millisecond) // pair[0] asks first
			}
		}
		time.Sleep(1500 * time.Millisecond) // both waiting, announced
		held.Close()
		first, second := <-order, <-order
		want := "long"
		switch pair[1] {
		case "new", "gate":
			want = pair[1]
		}
		if first != want {
			t.Errorf("waiting %v: the slot went to %s first, then %s; want %s first", pair, first, second, want)
		}
	}
}

// A fresh cache orders its guests by the committed seed durations, and
// the cache's own record of a guest takes their place.
func TestGuestSlotsSeeded(t *testing.T) {
	var seed map[string]float64
	if err := json.Unmarshal(seedDurations, &seed); err != nil {
		t.Fatalf("vmtest/durations.json: %v", err)
	}
	const job, arm64 = "vmtest-summary", "linux-image-6.1.0-56-cloud-arm64-unsigned"
	want, ok := seed[job+"/"+arm64]
	if !ok || want <= 0 {
		t.Fatalf("vmtest/durations.json has no %s/%s (got %v): copy a warm run's <cache>/vmtest/slots/durations.json", job, arm64, want)
	}
	s := guestSlots{dir: t.TempDir(), n: 1, job: job}
	if got := s.expected(arm64); got != time.Duration(want*float64(time.Second)) {
		t.Errorf("fresh cache: expected(%s) = %v, want the seed's %vs", arm64, got, want)
	}
	if got := s.expected("linux-image-9.9-unlisted"); got != unknownDuration {
		t.Errorf("a guest in neither: %v, want unknownDuration", got)
	}
	s.record(arm64, 42*time.Second)
	if got := s.expected(arm64); got != 42*time.Second {
		t.Errorf("after a run: expected(%s) = %v, want the recorded 42s", arm64, got)
	}
}
