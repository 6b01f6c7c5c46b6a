package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// payloadFor is record seq's payload: 150 to 1499 bytes, a pattern that
// starts at seq and steps by 31, so it never holds the record magic and
// no two neighbours are alike.
func payloadFor(seq uint64) []byte {
	p := make([]byte, 150+(seq*7919)%1350)
	for i := range p {
		p[i] = byte(seq + uint64(i)*31)
	}
	return p
}

func timeFor(seq uint64) time.Time { return time.Unix(1_700_000_000, int64(seq)*1000) }

func recordLen(seq uint64) int64 { return int64(recordHeaderSize + len(payloadFor(seq))) }

// logSink collects log records for assertions.
type logSink struct {
	mu   sync.Mutex
	recs []string
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	s.mu.Lock()
	s.recs = append(s.recs, b.String())
	s.mu.Unlock()
	return nil
}
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

func (s *logSink) find(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.recs {
		if strings.Contains(r, substr) {
			out = append(out, r)
		}
	}
	return out
}

func newSink() (*logSink, *slog.Logger) {
	s := &logSink{}
	return s, slog.New(s)
}

func open(t testing.TB, opts Options) *Journal {
	t.Helper()
	j, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func appendRange(t testing.TB, j *Journal, from, to uint64) {
	t.Helper()
	for s := from; s <= to; s++ {
		got, err := j.Append(timeFor(s), payloadFor(s))
		if err != nil {
			t.Fatalf("Append %d: %v", s, err)
		}
		if got != s {
			t.Fatalf("Append returned seq %d, want %d", got, s)
		}
	}
}

func closeJ(t testing.TB, j *Journal) {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// readAll reads dir as another process would, copying the records.
func readAll(t testing.TB, dir string, from uint64, log *slog.Logger) ([]Record, ReaderStats) {
	t.Helper()
	if log == nil {
		_, log = newSink()
	}
	r := newReader(dirTail{dir}, from, log)
	defer r.Close()
	var out []Record
	for {
		rec, err := r.Next(context.Background())
		if err == io.EOF {
			return out, r.Stats()
		}
		if err != nil {
			t.Fatalf("Next after seq %d: %v", len(out), err)
		}
		rec.Payload = bytes.Clone(rec.Payload)
		out = append(out, rec)
	}
}

// checkRecords asserts recs are exactly the records with the given seqs.
func checkRecords(t testing.TB, recs []Record, seqs []uint64) {
	t.Helper()
	if len(recs) != len(seqs) {
		t.Fatalf("got %d records, want %d", len(recs), len(seqs))
	}
	for i, s := range seqs {
		checkRecord(t, recs[i], s)
	}
}

func checkRecord(t testing.TB, r Record, seq uint64) {
	t.Helper()
	if r.Seq != seq {
		t.Fatalf("record seq %d, want %d", r.Seq, seq)
	}
	if !r.Time.Equal(timeFor(seq)) {
		t.Fatalf("record %d: time %v, want %v", seq, r.Time, timeFor(seq))
	}
	if !bytes.Equal(r.Payload, payloadFor(seq)) {
		t.Fatalf("record %d: payload differs (%d bytes, want %d)", seq, len(r.Payload), len(payloadFor(seq)))
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func without(s []uint64, drop ...uint64) []uint64 {
	var out []uint64
outer:
	for _, v := range s {
		for _, d := range drop {
			if v == d {
				continue outer
			}
		}
		out = append(out, v)
	}
	return out
}

func segFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// segmentOffset is the file offset of record seq in a segment holding
// first.. contiguously.
func segmentOffset(first, seq uint64) int64 {
	off := int64(segHeaderSize)
	for s := first; s < seq; s++ {
		off += recordLen(s)
	}
	return off
}

func TestRoundTripAcrossSegmentsAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	opts := Options{Dir: dir, SegmentBytes: 16 << 10}
	j := open(t, opts)
	appendRange(t, j, 1, 500)
	closeJ(t, j)

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("journal directory mode %v, want 0700", fi.Mode().Perm())
	}
	segs := segFiles(t, dir)
	if len(segs) < 10 || segs[0] != 1 {
		t.Fatalf("segments %v: want at least 10, the first 1", segs)
	}
	// Each segment's name is its first record's seq, and each one but the
	// last is within SegmentBytes.
	for i, s := range segs {
		recs, _ := readAll(t, dir, s, nil)
		if recs[0].Seq != s {
			t.Errorf("segment %s starts with seq %d", segName(s), recs[0].Seq)
		}
		fi, err := os.Stat(filepath.Join(dir, segName(s)))
		if err != nil {
			t.Fatal(err)
		}
		if i < len(segs)-1 && fi.Size() > opts.SegmentBytes {
			t.Errorf("segment %s is %d bytes, SegmentBytes %d", segName(s), fi.Size(), opts.SegmentBytes)
		}
	}

	j = open(t, opts)
	if st := j.Stats(); st.LastSeq != 500 || st.FirstSeq != 1 || st.Appended != 0 || st.Corrupt != 0 || st.TornTailBytes != 0 {
		t.Fatalf("stats after reopen: %+v", st)
	}
	appendRange(t, j, 501, 1000)
	st := j.Stats()
	closeJ(t, j)
	if st.LastSeq != 1000 || st.Appended != 500 || st.Segments != len(segFiles(t, dir)) {
		t.Fatalf("stats: %+v, %d segment files", st, len(segFiles(t, dir)))
	}

	recs, rs := readAll(t, dir, 0, nil)
	checkRecords(t, recs, seqRange(1, 1000))
	if rs != (ReaderStats{Records: 1000}) {
		t.Fatalf("reader stats %+v", rs)
	}
	// Seek: from the middle of a segment.
	recs, rs = readAll(t, dir, 777, nil)
	checkRecords(t, recs, seqRange(777, 1000))
	if rs != (ReaderStats{Records: 224}) {
		t.Fatalf("reader stats from 777: %+v", rs)
	}
	// Past the end.
	recs, _ = readAll(t, dir, 1001, nil)
	checkRecords(t, recs, nil)
}

func nextAsync(r *Reader, ctx context.Context) <-chan Record {
	ch := make(chan Record, 1)
	go func() {
		rec, err := r.Next(ctx)
		if err != nil {
			close(ch)
			return
		}
		rec.Payload = bytes.Clone(rec.Payload)
		ch <- rec
	}()
	return ch
}

func TestFollowReaderWakesOnFlush(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, FlushInterval: time.Hour, SegmentBytes: 4 << 10})
	defer j.Close()
	r, err := j.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := t.Context()

	for seq := uint64(1); seq <= 20; seq++ { // crosses segment rolls
		ch := nextAsync(r, ctx)
		appendRange(t, j, seq, seq)
		select {
		case rec := <-ch:
			t.Fatalf("record %d returned before it was flushed", rec.Seq)
		case <-time.After(30 * time.Millisecond):
		}
		if err := j.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case rec, ok := <-ch:
			if !ok {
				t.Fatal("Next failed")
			}
			checkRecord(t, rec, seq)
		case <-time.After(5 * time.Second):
			t.Fatalf("follower not woken by the flush of %d", seq)
		}
	}
	if len(segFiles(t, dir)) < 3 {
		t.Fatalf("want the test to cross segments, have %v", segFiles(t, dir))
	}

	// ctx ends a wait.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := r.Next(cctx); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}

	// Close wakes the follower: the last records, then io.EOF.
	appendRange(t, j, 21, 22)
	closeJ(t, j)
	for _, s := range []uint64{21, 22} {
		rec, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecord(t, rec, s)
	}
	if _, err := r.Next(ctx); err != io.EOF {
		t.Fatalf("Next after Close: %v, want io.EOF", err)
	}
}

func TestFollowReaderWakesOnTimedFlush(t *testing.T) {
	j := open(t, Options{Dir: t.TempDir(), FlushInterval: 20 * time.Millisecond})
	defer j.Close()
	r, err := j.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ch := nextAsync(r, t.Context())
	start := time.Now()
	appendRange(t, j, 1, 1)
	select {
	case rec := <-ch:
		checkRecord(t, rec, 1)
		t.Logf("record read %v after Append", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("the FlushInterval timer did not write the record")
	}
}

func TestConcurrentWriterAndOpenReader(t *testing.T) {
	dir := t.TempDir()
	const n = 20000
	j := open(t, Options{Dir: dir, SegmentBytes: 32 << 10, FlushInterval: time.Millisecond, BufferBytes: 8 << 10})
	werr := make(chan error, 1)
	go func() {
		for s := uint64(1); s <= n; s++ {
			if _, err := j.Append(timeFor(s), payloadFor(s)); err != nil {
				werr <- err
				return
			}
			if s%97 == 0 {
				runtime.Gosched()
			}
		}
		werr <- j.Close()
	}()

	var prev, passes int
	for done := false; !done; {
		select {
		case err := <-werr:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		// A separate reader, as `routetrace history` in another process:
		// every pass sees 1..k exactly, k never shrinking.
		recs, rs := readAll(t, dir, 1, nil)
		checkRecords(t, recs, seqRange(1, uint64(len(recs))))
		if rs.Corrupt != 0 || rs.Gaps != 0 {
			t.Fatalf("pass %d: reader stats %+v", passes, rs)
		}
		if len(recs) < prev {
			t.Fatalf("pass %d saw %d records, the one before %d", passes, len(recs), prev)
		}
		prev = len(recs)
		passes++
	}
	if prev != n {
		t.Fatalf("after Close a reader sees %d records, want %d", prev, n)
	}
	t.Logf("%d reader passes", passes)
}

func TestTornTailTruncatedOnOpen(t *testing.T) {
	for _, keep := range []int64{5, recordHeaderSize - 1, recordHeaderSize + 10} {
		t.Run(fmt.Sprintf("keep%d", keep), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir})
			appendRange(t, j, 1, 100)
			closeJ(t, j)
			p := filepath.Join(dir, segName(1))
			off := segmentOffset(1, 100)
			if err := os.Truncate(p, off+keep); err != nil {
				t.Fatal(err)
			}

			sink, log := newSink()
			j = open(t, Options{Dir: dir, Logger: log})
			st := j.Stats()
			if st.TornTailBytes != keep || st.LastSeq != 99 || st.Corrupt != 0 {
				t.Fatalf("stats after the torn tail: %+v", st)
			}
			w := sink.find("torn tail")
			if len(w) != 1 || !strings.Contains(w[0], "file="+p) || !strings.Contains(w[0], fmt.Sprintf("offset=%d", off)) {
				t.Fatalf("torn tail warnings: %q", w)
			}
			appendRange(t, j, 100, 101)
			closeJ(t, j)
			recs, rs := readAll(t, dir, 0, nil)
			checkRecords(t, recs, seqRange(1, 101))
			if rs.Corrupt != 0 {
				t.Fatalf("reader stats %+v", rs)
			}
		})
	}
}

const childEnv = "ROUTETRACE_JOURNAL_KILL9_DIR"

// TestKill9 re-executes the test binary as a writer that appends and
// flushes in a loop and reports each flushed seq, kills it with SIGKILL,
// and checks that every reported record survived intact.
func TestKill9(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		kill9Child(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var flushed uint64
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flushed "); ok {
			if flushed, err = strconv.ParseUint(v, 10, 64); err != nil {
				t.Fatal(err)
			}
		}
		if flushed >= 30000 || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if flushed == 0 {
		t.Fatal("the child reported no flush")
	}

	sink, log := newSink()
	j := open(t, Options{Dir: dir, Logger: log}) // the dead child's lock is free
	st := j.Stats()
	closeJ(t, j)
	recs, rs := readAll(t, dir, 0, nil)
	if uint64(len(recs)) < flushed {
		t.Fatalf("%d records survived, the child reported %d flushed", len(recs), flushed)
	}
	checkRecords(t, recs, seqRange(1, uint64(len(recs))))
	if rs.Corrupt != 0 || st.Corrupt != 0 || st.LastSeq != uint64(len(recs)) {
		t.Fatalf("reader stats %+v, journal stats %+v", rs, st)
	}
	t.Logf("child reported %d flushed; %d records survived in %d segments; torn tail %d bytes; warnings %q",
		flushed, len(recs), len(segFiles(t, dir)), st.TornTailBytes, sink.find("WARN"))
}

func kill9Child(dir string) {
	j, err := Open(Options{Dir: dir, SegmentBytes: 256 << 10, MaxBytes: 1 << 30})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for s := uint64(1); ; s++ {
		if _, err := j.Append(timeFor(s), payloadFor(s)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if s%50 == 0 {
			if err := j.Flush(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Fprintf(w, "flushed %d\n", s)
			w.Flush()
		}
	}
}

// flip XORs one byte of a file.
func flip(t testing.TB, path string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestFlippedByteSkipsOnlyThatRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int64 // within record 100
		mask byte
	}{
		{"payload", recordHeaderSize + 40, 0x10},
		{"magic", 1, 0x01},
		{"crc", 5, 0x80},
		{"length-low", 8, 0x01},
		{"length-high", 10, 0x40},
		{"length-longer", 9, 0x02},
		{"seq", 13, 0x04},
		{"time", 25, 0x01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir})
			appendRange(t, j, 1, 200)
			closeJ(t, j)
			p := filepath.Join(dir, segName(1))
			off := segmentOffset(1, 100)
			flip(t, p, off+tc.at, tc.mask)

			sink, log := newSink()
			recs, rs := readAll(t, dir, 0, log)
			checkRecords(t, recs, without(seqRange(1, 200), 100))
			if rs != (ReaderStats{Records: 199, Corrupt: 1, Missing: 1}) {
				t.Fatalf("reader stats %+v", rs)
			}
			w := sink.find("damaged")
			if len(w) != 1 || !strings.Contains(w[0], "file="+p) || !strings.Contains(w[0], fmt.Sprintf("offset=%d", off)) {
				t.Fatalf("warnings %q, want one naming %s offset %d", w, p, off)
			}

			// The writer's scan of its newest segment finds the same
			// damage, keeps the records after it, and continues at 201.
			j = open(t, Options{Dir: dir, Logger: log})
			if st := j.Stats(); st.Corrupt != 1 || st.LastSeq != 200 || st.TornTailBytes != 0 {
				t.Fatalf("journal stats %+v", st)
			}
			appendRange(t, j, 201, 201)
			closeJ(t, j)
			recs, _ = readAll(t, dir, 0, nil)
			checkRecords(t, recs, without(seqRange(1, 201), 100))
		})
	}
}

func TestTruncatedMiddleSegment(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 8 << 10})
	appendRange(t, j, 1, 300)
	closeJ(t, j)
	segs := segFiles(t, dir)
	if len(segs) < 5 {
		t.Fatalf("segments %v", segs)
	}
	mid := segs[len(segs)/2]
	last := segs[len(segs)/2+1] - 1 // the middle segment's last record
	p := filepath.Join(dir, segName(mid))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()-50); err != nil {
		t.Fatal(err)
	}
	sink, log := newSink()
	recs, rs := readAll(t, dir, 0, log)
	checkRecords(t, recs, without(seqRange(1, 300), last))
	if rs != (ReaderStats{Records: 299, Corrupt: 1, Missing: 1}) {
		t.Fatalf("reader stats %+v", rs)
	}
	off := segmentOffset(mid, last)
	if w := sink.find("damaged"); len(w) != 1 || !strings.Contains(w[0], fmt.Sprintf("offset=%d", off)) || !strings.Contains(w[0], "file="+p) {
		t.Fatalf("warnings %q, want one naming %s offset %d", w, p, off)
	}
}

func TestReaderSkipsSegmentsDeletedUnderIt(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 8 << 10})
	appendRange(t, j, 1, 200)
	closeJ(t, j)
	segs := segFiles(t, dir)
	_, log := newSink()
	r := newReader(dirTail{dir}, 1, log)
	defer r.Close()
	rec, err := r.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, rec, 1)
	// The cap deletes the reader's segment and the next two.
	for _, s := range segs[:3] {
		if err := os.Remove(filepath.Join(dir, segName(s))); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	for {
		rec, err := r.Next(t.Context())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		checkRecord(t, rec, rec.Seq)
		got = append(got, rec.Seq)
	}
	// The open segment is read to its end; then segments 2 and 3 are gone.
	want := append(seqRange(2, segs[1]-1), seqRange(segs[3], 200)...)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("seqs %v, want %v", got, want)
	}
	if rs := r.Stats(); rs.Gaps != 1 || rs.Missing != segs[3]-segs[1] || rs.Corrupt != 0 {
		t.Fatalf("reader stats %+v, want one gap of %d", rs, segs[3]-segs[1])
	}
}

func TestSizeCap(t *testing.T) {
	const segBytes, capBytes = 8 << 10, 32 << 10
	t.Run("none-acked", func(t *testing.T) {
		dir := t.TempDir()
		sink, log := newSink()
		j := open(t, Options{Dir: dir, SegmentBytes: segBytes, MaxBytes: capBytes, Logger: log})
		appendRange(t, j, 1, 400)
		if err := j.enforceCap(); err != nil { // after the background's passes
			t.Fatal(err)
		}
		st := j.Stats()
		closeJ(t, j)
		segs := segFiles(t, dir)
		if st.Bytes > capBytes || st.FirstSeq != segs[0] || st.Segments != len(segs) {
			t.Fatalf("stats %+v, segments %v", st, segs)
		}
		if st.DroppedUndelivered != st.FirstSeq-1 {
			t.Fatalf("dropped %d, want every record before %d", st.DroppedUndelivered, st.FirstSeq)
		}
		w := sink.find("journal size cap (--journal-max-bytes) reached before the backend acknowledged them")
		if len(w) == 0 {
			t.Fatal("no warning for the dropped records")
		}
		// The newest segments remain, complete.
		recs, rs := readAll(t, dir, 1, nil)
		checkRecords(t, recs, seqRange(st.FirstSeq, 400))
		if rs.Gaps != 1 || rs.Missing != st.FirstSeq-1 {
			t.Fatalf("reader stats %+v", rs)
		}
		j = open(t, Options{Dir: dir, SegmentBytes: segBytes, MaxBytes: capBytes, Logger: log})
		if got := j.Stats().DroppedUndelivered; got != st.DroppedUndelivered {
			t.Fatalf("after reopen dropped %d, want %d", got, st.DroppedUndelivered)
		}
		closeJ(t, j)
	})
	for _, acked := range []uint64{150, 400} {
		t.Run(fmt.Sprintf("acked-%d", acked), func(t *testing.T) {
			dir := t.TempDir()
			sink, log := newSink()
			j := open(t, Options{Dir: dir, SegmentBytes: segBytes, Logger: log})
			appendRange(t, j, 1, 400)
			if err := j.Ack(acked, []byte("burst")); err != nil {
				t.Fatal(err)
			}
			closeJ(t, j)
			before := segFiles(t, dir)
			// Reopened with the cap: Open's pass drops the oldest.
			j = open(t, Options{Dir: dir, SegmentBytes: segBytes, MaxBytes: capBytes, Logger: log})
			if err := j.enforceCap(); err != nil {
				t.Fatal(err)
			}
			st := j.Stats()
			closeJ(t, j)
			after := segFiles(t, dir)
			if fmt.Sprint(after) != fmt.Sprint(before[len(before)-len(after):]) || st.FirstSeq != after[0] {
				t.Fatalf("segments %v after the cap, %v before: not the oldest dropped", after, before)
			}
			var want uint64
			if st.FirstSeq-1 > acked {
				want = st.FirstSeq - 1 - acked
			}
			if st.DroppedUndelivered != want || st.AckedSeq != acked {
				t.Fatalf("dropped %d, want %d (first seq %d, acked %d)", st.DroppedUndelivered, want, st.FirstSeq, acked)
			}
			if w := sink.find("dropped_undelivered="); (len(w) > 0) != (want > 0) {
				t.Fatalf("warnings %q with %d dropped", w, want)
			}
			j = open(t, Options{Dir: dir, SegmentBytes: segBytes, MaxBytes: capBytes, Logger: log})
			if got := j.Stats().DroppedUndelivered; got != want {
				t.Fatalf("after reopen dropped %d, want %d", got, want)
			}
			closeJ(t, j)
		})
	}
}

func TestAckRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	if seq, state := j.Acked(); seq != 0 || state != nil {
		t.Fatalf("fresh Acked %d %q", seq, state)
	}
	appendRange(t, j, 1, 10)
	state := bytes.Repeat([]byte("open-burst;"), 100)
	if err := j.Ack(7, state); err != nil {
		t.Fatal(err)
	}
	if seq, got := j.Acked(); seq != 7 || !bytes.Equal(got, state) {
		t.Fatalf("Acked %d %q", seq, got)
	}
	if err := j.Ack(5, nil); err == nil {
		t.Fatal("Ack going backwards accepted")
	}
	if err := j.Ack(11, nil); err == nil {
		t.Fatal("Ack past the last appended seq accepted")
	}
	if err := j.Ack(8, make([]byte, MaxStateBytes+1)); err == nil {
		t.Fatal("oversized state accepted")
	}
	big := bytes.Repeat([]byte{0xAB}, MaxStateBytes)
	if err := j.Ack(8, big); err != nil {
		t.Fatal(err)
	}
	closeJ(t, j)

	j = open(t, Options{Dir: dir})
	if seq, got := j.Acked(); seq != 8 || !bytes.Equal(got, big) {
		t.Fatalf("after reopen Acked %d, %d bytes", seq, len(got))
	}
	if st := j.Stats(); st.AckedSeq != 8 || st.LastSeq != 10 {
		t.Fatalf("stats %+v", st)
	}
	if err := j.Ack(10, []byte("x")); err != nil {
		t.Fatal(err)
	}
	closeJ(t, j)
	j = open(t, Options{Dir: dir})
	defer j.Close()
	if seq, got := j.Acked(); seq != 10 || string(got) != "x" {
		t.Fatalf("after the second reopen Acked %d %q", seq, got)
	}
}

// Acked records lost to power loss (never fsynced) must not have their
// seqs reused: the exporter would skip the new records as delivered.
func TestSeqStaysAboveAckedAfterLoss(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendRange(t, j, 1, 50)
	if err := j.Ack(50, nil); err != nil {
		t.Fatal(err)
	}
	closeJ(t, j)
	if err := os.Truncate(filepath.Join(dir, segName(1)), segmentOffset(1, 41)); err != nil {
		t.Fatal(err)
	}
	j = open(t, Options{Dir: dir})
	defer j.Close()
	seq, err := j.Append(timeFor(51), payloadFor(51))
	if err != nil || seq != 51 {
		t.Fatalf("Append after losing acked records: seq %d, %v; want 51", seq, err)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), dir, "--state-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	closeJ(t, j)
	j = open(t, Options{Dir: dir})
	closeJ(t, j)
}

func TestAppendTooLarge(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendRange(t, j, 1, 3)
	if _, err := j.Append(time.Now(), make([]byte, MaxRecordBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Append: %v, want ErrTooLarge", err)
	}
	max := bytes.Repeat([]byte{7}, MaxRecordBytes)
	if seq, err := j.Append(timeFor(4), max); err != nil || seq != 4 {
		t.Fatalf("Append of MaxRecordBytes: %d, %v", seq, err)
	}
	appendRange(t, j, 5, 5)
	closeJ(t, j)
	recs, rs := readAll(t, dir, 0, nil)
	if len(recs) != 5 || !bytes.Equal(recs[3].Payload, max) || recs[3].Seq != 4 {
		t.Fatalf("%d records", len(recs))
	}
	checkRecords(t, append(recs[:3:3], recs[4]), []uint64{1, 2, 3, 5})
	if rs.Corrupt != 0 || rs.Missing != 0 {
		t.Fatalf("reader stats %+v", rs)
	}
}

// memTail is a journal of one in-memory segment; final adds an empty
// newer segment, so the first one is complete.
type memTail struct {
	data  []byte
	final bool
}

func (m memTail) list() ([]uint64, error) {
	if m.final {
		return []uint64{1, 1 << 40}, nil
	}
	return []uint64{1}, nil
}

func (m memTail) open(seg uint64) (segSource, string, error) {
	if seg == 1 {
		return nopCloser{bytes.NewReader(m.data)}, "mem", nil
	}
	return nopCloser{bytes.NewReader(segHeader())}, "mem2", nil
}

func (m memTail) extent(seg uint64) (int64, bool, <-chan struct{}, error) {
	return -1, m.final && seg == 1, nil, nil
}

func segmentBytes(from, to uint64) []byte {
	b := segHeader()
	for s := from; s <= to; s++ {
		b = appendRecord(b, s, timeFor(s).UnixNano(), payloadFor(s)[:s%40])
	}
	return b
}

func FuzzDecodeRecord(f *testing.F) {
	seg := segmentBytes(1, 12)
	f.Add(seg)
	f.Add(seg[:len(seg)-7])
	f.Add(seg[segHeaderSize:])
	f.Add(segHeader())
	f.Add([]byte{})
	damaged := bytes.Clone(seg)
	damaged[len(damaged)/2] ^= 0x20
	f.Add(damaged)
	f.Add(append(segmentBytes(5, 6), segmentBytes(1, 3)[segHeaderSize:]...))
	quiet := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte) {
		if seq, ns, p, n, st := decodeRecord(data); st == decOK {
			if n > len(data) || !bytes.Equal(appendRecord(nil, seq, ns, p), data[:n]) {
				t.Fatalf("decodeRecord accepted a record that does not re-encode to its bytes")
			}
		}
		for _, final := range []bool{false, true} {
			r := newReader(memTail{data, final}, 0, quiet)
			var last uint64
			for calls := 0; ; calls++ {
				if calls > len(data)/recordHeaderSize+2 {
					t.Fatalf("more records than the input can hold")
				}
				rec, err := r.Next(context.Background())
				if err == io.EOF {
					break
				}
				if err != nil {
					// A header of another format version is refused,
					// not guessed at.
					if strings.Contains(err.Error(), "journal format version") && !bytes.HasPrefix(data, segHeader()) {
						break
					}
					t.Fatal(err)
				}
				if rec.Seq <= last {
					t.Fatalf("seq %d after %d", rec.Seq, last)
				}
				last = rec.Seq
				// The record's exact encoding, with a correct CRC, is in
				// the input.
				if !bytes.Contains(data, appendRecord(nil, rec.Seq, rec.Time.UnixNano(), rec.Payload)) {
					t.Fatalf("record %d is not in the input with a valid CRC", rec.Seq)
				}
			}
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	j := open(b, Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	defer j.Close()
	payload := bytes.Repeat([]byte{0x5A}, 300)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := j.Append(now, payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		b.Fatal(err)
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/sec, "records/s")
	b.ReportMetric(float64(b.N)*300/1e6/sec, "MB/s")
}

func BenchmarkRead(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	j := open(b, Options{Dir: dir, MaxBytes: 1 << 30})
	payload := bytes.Repeat([]byte{0x5A}, 300)
	for i := 0; i < n; i++ {
		if _, err := j.Append(time.Unix(0, int64(i)), payload); err != nil {
			b.Fatal(err)
		}
	}
	closeJ(b, j)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := OpenReader(dir, 0)
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; ; k++ {
			_, err := r.Next(context.Background())
			if err == io.EOF {
				if k != n {
					b.Fatalf("read %d records, want %d", k, n)
				}
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		r.Close()
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)*n/sec, "records/s")
	b.ReportMetric(float64(b.N)*n*300/1e6/sec, "MB/s")
}
