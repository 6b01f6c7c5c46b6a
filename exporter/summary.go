package exporter

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

// Summary counts events for a report at the end of a run. Its zero value
// is ready to use. Unlike the other sinks it is safe for concurrent use,
// because a signal handler may print it while the read loop still writes.
type Summary struct {
	mu       sync.Mutex
	changes  uint64
	failed   uint64
	losses   tracer.Losses
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

// SetLosses records what the tracer may have missed, every counter.
func (s *Summary) SetLosses(l tracer.Losses) {
	s.mu.Lock()
	s.losses = l
	s.mu.Unlock()
}

// lossCounters names each of tracer.Losses's counters, in the order the
// summary prints them: text for the "lost:" line, key for JSON (a public
// interface, like the event fields). A counter the tracer adds must be
// added here; TestLossCountersCoverLosses fails until it is.
var lossCounters = []struct {
	text, key string
	get       func(*tracer.Losses) uint64
}{
	{"ring records", "ring_records", func(l *tracer.Losses) uint64 { return l.RingRecords }},
	{"overruns", "overruns", func(l *tracer.Losses) uint64 { return l.Overruns }},
	{"truncated", "truncated", func(l *tracer.Losses) uint64 { return l.Truncated }},
	{"unconfirmed", "unconfirmed", func(l *tracer.Losses) uint64 { return l.Unconfirmed }},
	{"evicted", "evicted", func(l *tracer.Losses) uint64 { return l.Evicted }},
	{"read errors", "read_errors", func(l *tracer.Losses) uint64 { return l.ReadErrors }},
	{"listener gaps", "listener_gaps", func(l *tracer.Losses) uint64 { return l.ListenerGaps }},
	{"unlistened", "unlistened", func(l *tracer.Losses) uint64 { return l.Unlistened }},
	{"kprobe misses", "kprobe_missed", func(l *tracer.Losses) uint64 { return l.KprobeMissed }},
}

// Lost is the total of every loss counter: zero means nothing was missed.
func (s *Summary) Lost() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.losses.Total()
}

// LossLine names every loss counter with its value, zeros included, so
// that a reader sees what was counted and not only that the sum is zero:
// "lost: ring records 0, overruns 0, ..., unlistened 0".
func (s *Summary) LossLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := []byte("lost: ")
	for i, c := range lossCounters {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, c.text...)
		b = strconv.AppendUint(append(b, ' '), c.get(&s.losses), 10)
	}
	return string(b)
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
		b = appendCount(append(b, " by "...), s.processes(), "process", "processes")
		b = append(b, " ("...)
		b = appendCounts(b, s.byActor)
		b = append(b, ')')
	}
	if s.failed != 0 {
		b = strconv.AppendUint(append(b, "; "...), s.failed, 10)
		b = append(b, " failed"...)
	}
	b = strconv.AppendUint(append(b, "; "...), s.losses.Total(), 10)
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

// processes counts distinct process ids, the kernel as one more and the
// uncaptured requesters as one more.
func (s *Summary) processes() uint64 {
	n := uint64(len(s.procs))
	if s.kernel {
		n++
	}
	if s.unknown {
		n++
	}
	return n
}

// WriteJSON writes the summary as one JSON object on one line, the last
// line of --output json: {"summary":{"changes":N,"processes":N,"failed":N,
// "by_op":{..},"by_object":{..},"by_actor":{..},"failed_by_errno":{..},
// "lost":{"ring_records":N,...},"lost_total":N}}. Every loss counter is
// present, zeros included; the count maps hold only what was seen.
func (s *Summary) WriteJSON(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := append([]byte(nil), `{"summary":{"changes":`...)
	b = strconv.AppendUint(b, s.changes, 10)
	b = appendUintField(b, "processes", s.processes())
	b = appendUintField(b, "failed", s.failed)
	for _, m := range []struct {
		key    string
		counts map[string]uint64
	}{{"by_op", s.byOp}, {"by_object", s.byObject}, {"by_actor", s.byActor}, {"failed_by_errno", s.byErrno}} {
		b = appendKey(b, m.key)
		b = appendCountsJSON(b, m.counts)
	}
	b = append(appendKey(b, "lost"), '{')
	for i, c := range lossCounters {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, c.key...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, c.get(&s.losses), 10)
	}
	b = append(b, '}')
	b = appendUintField(b, "lost_total", s.losses.Total())
	b = append(b, "}}\n"...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing the json summary: %w", err)
	}
	return nil
}

// appendCountsJSON appends counts as a JSON object, keys sorted as
// appendCounts sorts them.
func appendCountsJSON(b []byte, counts map[string]uint64) []byte {
	b = append(b, '{')
	for i, name := range sortedNames(counts) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, []byte(name))
		b = strconv.AppendUint(append(b, ':'), counts[name], 10)
	}
	return append(b, '}')
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
	for i, name := range sortedNames(counts) {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, name...)
		b = strconv.AppendUint(append(b, ' '), counts[name], 10)
	}
	return b
}

// sortedNames orders the names with a count by count, largest first, then
// by name so that the output is stable.
func sortedNames(counts map[string]uint64) []string {
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
	return names
}
