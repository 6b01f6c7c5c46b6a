package main

import (
	"context"
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
