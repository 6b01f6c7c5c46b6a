package exporter

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/routetrace/routetrace/event"
)

// Summary counts events for a report at the end of a run. Its zero value
// is ready to use. Unlike the other sinks it is safe for concurrent use,
// because a signal handler may print it while the read loop still writes.
type Summary struct {
	mu       sync.Mutex
	changes  uint64
	failed   uint64
	lost     uint64
	byOp     map[string]uint64
	byObject map[string]uint64
	byActor  map[string]uint64
	byErrno  map[string]uint64
	procs    map[uint32]struct{}
	kernel   bool // the kernel counts as one more process
	unknown  bool // and so do the uncaptured requesters, as one
}

// Write counts ev. A successful change counts once, except a flush record,
// which counts the routes it removed; a failed attempt counts as failed.
func (s *Summary) Write(ev *event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byOp == nil {
		s.byOp = map[string]uint64{}
		s.byObject = map[string]uint64{}
		s.byActor = map[string]uint64{}
		s.byErrno = map[string]uint64{}
		s.procs = map[uint32]struct{}{}
	}
	if ev.Errno != 0 {
		s.failed++
		s.byErrno[string(event.AppendErrno(nil, ev.Errno))]++
		return nil
	}
	n := uint64(1)
	if ev.Op == event.OpFlush {
		n = uint64(ev.Count)
	}
	s.changes += n
	s.byOp[ev.Op.String()] += n
	s.byObject[ev.Object.String()] += n
	if ev.Origin == event.OriginKernel || ev.Actor.Kernel {
		s.kernel = true
		s.byActor["kernel"] += n
	} else if ev.Actor.Unknown() {
		s.unknown = true
		s.byActor["unknown"] += n
	} else {
		s.procs[ev.Actor.Tgid] = struct{}{}
		name := "?"
		if comm := ev.Actor.Comm.Bytes(); len(comm) > 0 {
			name = string(appendSafe(nil, comm))
		}
		s.byActor[name] += n
	}
	return nil
}

// Close does nothing; the counts stay readable.
func (s *Summary) Close() error { return nil }

// SetLost records how many events the tracer could not deliver.
func (s *Summary) SetLost(n uint64) {
	s.mu.Lock()
	s.lost = n
	s.mu.Unlock()
}

// String is a one-line summary, e.g.
// "3 changes by 2 processes (systemd-networkd 2, ip 1); 1 failed; 0 lost".
// Processes are distinct process ids; the list groups them by name.
func (s *Summary) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	if s.changes == 0 {
		b = append(b, "no changes seen"...)
	} else {
		b = appendCount(b, s.changes, "change", "changes")
		procs := uint64(len(s.procs))
		if s.kernel {
			procs++
		}
		if s.unknown {
			procs++
		}
		b = appendCount(append(b, " by "...), procs, "process", "processes")
		b = append(b, " ("...)
		b = appendCounts(b, s.byActor)
		b = append(b, ')')
	}
	if s.failed != 0 {
		b = strconv.AppendUint(append(b, "; "...), s.failed, 10)
		b = append(b, " failed"...)
	}
	b = strconv.AppendUint(append(b, "; "...), s.lost, 10)
	b = append(b, " lost"...)
	return string(b)
}

// Detail breaks the changes down by operation, object and actor, and the
// failures by errno, one line each, without a trailing newline. It is
// empty when nothing was seen.
func (s *Summary) Detail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	for _, d := range []struct {
		label  string
		counts map[string]uint64
	}{
		{"by operation", s.byOp},
		{"by object", s.byObject},
		{"by actor", s.byActor},
		{"failed", s.byErrno},
	} {
		if len(d.counts) == 0 {
			continue
		}
		lines = append(lines, d.label+": "+string(appendCounts(nil, d.counts)))
	}
	return strings.Join(lines, "\n")
}

func appendCount(b []byte, n uint64, one, many string) []byte {
	b = strconv.AppendUint(b, n, 10)
	b = append(b, ' ')
	if n == 1 {
		return append(b, one...)
	}
	return append(b, many...)
}

// appendCounts appends "name n, name n" by count, largest first, then by
// name so that the output is stable.
func appendCounts(b []byte, counts map[string]uint64) []byte {
	names := make([]string, 0, len(counts))
	for name, n := range counts {
		if n != 0 {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(x, y string) int {
		if c := cmp.Compare(counts[y], counts[x]); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	for i, name := range names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, name...)
		b = strconv.AppendUint(append(b, ' '), counts[name], 10)
	}
	return b
}
