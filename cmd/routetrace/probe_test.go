package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/routetrace/routetrace/internal/bpffeat"
)

// TestStatusNotOffered: a feature the kernel lacks reads "not offered" with
// its name, however deeply wrapped; other refusals keep their cause.
func TestStatusNotOffered(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "available"},
		{fmt.Errorf("enforce: not offered: %w", bpffeat.ErrNoBPFLoop), "not offered: the kernel lacks the bpf_loop helper (Linux 5.17)"},
		{bpffeat.ErrNoBPFLoop, "not offered: the kernel lacks the bpf_loop helper (Linux 5.17)"},
		{fmt.Errorf("attaching: %w", errors.New("operation not permitted")), "UNAVAILABLE: operation not permitted"},
	} {
		if got := status(tc.err, "available"); got != tc.want {
			t.Errorf("status(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
