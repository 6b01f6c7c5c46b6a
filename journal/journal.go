package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure the writer. Zero values take the defaults.
type Options struct {
	// Dir holds the journal: <state-dir>/journal. Created 0700.
	Dir string
	// SegmentBytes: a segment is closed and a new one started when the
	// next record would take it past this size. Default 8 MiB.
	SegmentBytes int64
	// MaxBytes caps all segments together; the oldest are deleted whole
	// to stay under it. Default 256 MiB.
	MaxBytes int64
	// FlushInterval: an appended record is written to its file (write(2),
	// no fsync) at most this long after Append. Default 20 ms.
	FlushInterval time.Duration
	// SyncInterval: written records are fsynced at most this long after
	// they are written. Default 1 s.
	SyncInterval time.Duration
	// BufferBytes: the append buffer is written out when the next record
	// would not fit. Default 256 KiB.
	BufferBytes int
	// Logger for warnings (torn tail, damage, records dropped by the
	// cap). Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultSegmentBytes  = 8 << 20
	defaultMaxBytes      = 256 << 20
	defaultFlushInterval = 20 * time.Millisecond
	defaultSyncInterval  = time.Second
	defaultBufferBytes   = 256 << 10
)

var (
	// ErrLocked: another process holds the journal's lock.
	ErrLocked = errors.New("journal locked")
	// ErrClosed: the Journal was closed.
	ErrClosed = errors.New("journal closed")
	// ErrTooLarge: a payload above MaxRecordBytes.
	ErrTooLarge = errors.New("journal record too large")
)

// Stats describe the journal.
type Stats struct {
	Bytes    int64 // all segments, including records not yet written out
	Segments int
	FirstSeq uint64 // first seq of the oldest segment
	LastSeq  uint64 // last seq appended (0: none ever)
	AckedSeq uint64
	// DroppedUndelivered counts records the size cap deleted before the
	// exporter acknowledged them, over the journal's whole life.
	DroppedUndelivered uint64
	Appended           uint64 // by this Journal, since Open
	// Found when Open scanned the newest segment: damaged regions skipped
	// (their records lost) and the bytes of a torn tail truncated.
	Corrupt       uint64
	TornTailBytes int64
}

type segInfo struct {
	first uint64
	size  int64
}

// Journal is the single writer. Its methods are safe for concurrent use.
type Journal struct {
	opts Options
	log  *slog.Logger
	dir  string
	lock *os.File

	mu       sync.Mutex
	closed   bool
	f        *os.File // current segment
	segFirst uint64
	segSize  int64     // bytes of the current segment in its file
	segs     []segInfo // older segments, oldest first
	buf      []byte
	nextSeq  uint64
	appended uint64
	notify   chan struct{} // closed on every write to a segment, then replaced
	timer    *time.Timer
	dirty    bool       // written since the last fsync
	dirDirty bool       // a segment was created since the last directory fsync
	toSync   []*os.File // rolled segments: fsynced and closed by the syncer

	stateMu sync.Mutex // the cursor: Ack and the size cap
	cursor  cursorState

	capMu sync.Mutex // one size-cap pass at a time

	corrupt   uint64
	tornBytes int64

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// Open opens or creates the journal in opts.Dir as its only writer. If
// another process writes it, the error wraps ErrLocked and names it.
func Open(opts Options) (*Journal, error) {
	if opts.Dir == "" {
		return nil, errors.New("opening journal: no directory")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = defaultSyncInterval
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = defaultBufferBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating journal directory: %w", err)
	}
	j := &Journal{
		opts:   opts,
		log:    opts.Logger,
		dir:    opts.Dir,
		buf:    make([]byte, 0, opts.BufferBytes),
		notify: make(chan struct{}),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	j.lock = lock
	if err := j.recover(); err != nil {
		j.closeFiles()
		return nil, err
	}
	j.timer = time.AfterFunc(time.Hour, j.timerFlush)
	j.timer.Stop()
	j.wg.Add(1)
	go j.background()
	j.kickCap() // MaxBytes may be lower than last run's
	return j, nil
}

// lockDir takes the exclusive flock on dir/lock and writes our pid into it.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening journal lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf("pid %d", pid)
				}
			}
			return nil, fmt.Errorf("%w: another routetrace (%s) is journaling to %s; this run is not journaled — use --state-dir for a second journal",
				ErrLocked, holder, dir)
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("writing our pid to %s: %w", p, err)
		}
	}
	return f, nil
}

// recover loads the cursor, finishes an interrupted size-cap deletion,
// and scans the newest segment: a torn tail is truncated back to the last
// good record and the seqs continue after it.
func (j *Journal) recover() error {
	b, err := os.ReadFile(filepath.Join(j.dir, cursorFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading journal cursor: %w", err)
	default:
		c, err := unmarshalCursor(b)
		if errors.Is(err, errBadCursor) {
			// Renamed into place whole, so this is damage on disk.
			// Starting over re-exports the journal (duplicates), which
			// beats refusing to trace.
			j.log.Warn("journal: cursor file damaged, delivery restarts from the oldest record",
				"file", filepath.Join(j.dir, cursorFileName))
		} else if err != nil {
			return fmt.Errorf("reading journal cursor %s: %w", filepath.Join(j.dir, cursorFileName), err)
		}
		j.cursor = c
	}
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("listing journal directory: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") && e.Name() != cursorTmpFileName {
			os.Remove(filepath.Join(j.dir, e.Name())) // a segment never renamed into place
		}
	}
	segs, err := listSegments(j.dir)
	if err != nil {
		return err
	}
	// Segments wholly at or below droppedThrough were counted as dropped
	// before a crash interrupted their deletion.
	for len(segs) > 1 && segs[1]-1 <= j.cursor.droppedThrough {
		if err := os.Remove(filepath.Join(j.dir, segName(segs[0]))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("finishing the deletion of a dropped segment: %w", err)
		}
		segs = segs[1:]
	}
	floor := max(j.cursor.acked, j.cursor.droppedThrough) + 1
	if len(segs) == 0 {
		j.nextSeq = floor
		return j.createSegment()
	}
	for _, s := range segs[:len(segs)-1] {
		fi, err := os.Stat(filepath.Join(j.dir, segName(s)))
		if err != nil {
			return fmt.Errorf("journal segment: %w", err)
		}
		j.segs = append(j.segs, segInfo{first: s, size: fi.Size()})
	}
	return j.recoverLast(segs[len(segs)-1], floor)
}

// singleTail is the newest segment as Open sees it: nothing follows it.
type singleTail struct {
	seg uint64
	f   *os.File
}

func (s singleTail) list() ([]uint64, error) { return []uint64{s.seg}, nil }
func (s singleTail) open(uint64) (segSource, string, error) {
	return nopCloser{s.f}, s.f.Name(), nil
}
func (s singleTail) extent(uint64) (int64, bool, <-chan struct{}, error) { return -1, false, nil, nil }

type nopCloser struct{ io.ReaderAt }

func (nopCloser) Close() error { return nil }

func (j *Journal) recoverLast(seg, floor uint64) error {
	p := filepath.Join(j.dir, segName(seg))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening the newest journal segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("journal segment: %w", err)
	}
	r := newReader(singleTail{seg, f}, 0, j.log)
	for {
		_, err := r.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("scanning the newest journal segment: %w", err)
		}
	}
	j.corrupt = r.stats.Corrupt
	end := r.lastEnd
	if end == 0 && r.headerOK {
		end = segHeaderSize
	}
	if end == 0 {
		// Neither a header nor a record: rewrite the header.
		if _, err := f.WriteAt(segHeader(), 0); err != nil {
			f.Close()
			return fmt.Errorf("rewriting the header of %s: %w", p, err)
		}
		end = segHeaderSize
	}
	if fi.Size() > end {
		j.tornBytes = fi.Size() - end
		j.log.Warn("journal: torn tail (power loss or kill -9 mid-write), truncated back to the last good record",
			"file", p, "offset", end, "bytes", j.tornBytes, "last_seq", r.last)
		if err := f.Truncate(end); err != nil {
			f.Close()
			return fmt.Errorf("truncating the torn tail of %s at offset %d: %w", p, end, err)
		}
		j.dirty = true
	}
	j.f, j.segFirst, j.segSize = f, seg, end
	j.nextSeq = max(r.last+1, seg, floor)
	if r.last == 0 && seg < floor {
		// An empty newest segment named below seqs already acked (the
		// records were acked and lost to power loss): start a fresh one
		// so a segment's name stays its first seq.
		j.segs = append(j.segs, segInfo{first: seg, size: end})
		j.toSync = append(j.toSync, f)
		return j.createSegment()
	}
	return nil
}

// createSegment starts segment j.nextSeq as the current one. It is made
// under a temporary name and renamed once its header is written, so a
// reader never sees a segment without its header.
func (j *Journal) createSegment() error {
	name := segName(j.nextSeq)
	tmp := filepath.Join(j.dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating journal segment %s: %w", tmp, err)
	}
	if _, err := f.Write(segHeader()); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing the header of %s: %w", tmp, err)
	}
	dst := filepath.Join(j.dir, name)
	if err := os.Rename(tmp, dst); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("renaming %s to %s: %w", tmp, dst, err)
	}
	j.f, j.segFirst, j.segSize = f, j.nextSeq, segHeaderSize
	j.dirty, j.dirDirty = true, true
	return nil
}

// Append adds a record with time t and returns its seq. It copies payload
// into a memory buffer; the buffer reaches the file within FlushInterval
// (or sooner when full) and the disk within SyncInterval more. A payload
// above MaxRecordBytes is refused with ErrTooLarge and nothing else
// changes; on a write error the record is not appended.
func (j *Journal) Append(t time.Time, payload []byte) (uint64, error) {
	if len(payload) > MaxRecordBytes {
		return 0, fmt.Errorf("appending to the journal: %w: %d bytes, at most %d", ErrTooLarge, len(payload), MaxRecordBytes)
	}
	size := recordHeaderSize + len(payload)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0, ErrClosed
	}
	inSeg := j.segSize + int64(len(j.buf))
	if inSeg > segHeaderSize && inSeg+int64(size) > j.opts.SegmentBytes {
		if err := j.writeLocked(); err != nil {
			return 0, err
		}
		if err := j.rollLocked(); err != nil {
			return 0, err
		}
	} else if len(j.buf) > 0 && len(j.buf)+size > j.opts.BufferBytes {
		if err := j.writeLocked(); err != nil {
			return 0, err
		}
	}
	if len(j.buf) == 0 {
		// The first record in the buffer arms the flush, so none waits
		// longer than FlushInterval.
		j.timer.Reset(j.opts.FlushInterval)
	}
	seq := j.nextSeq
	j.buf = appendRecord(j.buf, seq, t.UnixNano(), payload)
	j.nextSeq++
	j.appended++
	return seq, nil
}

// Flush writes the buffered records to the segment file now (no fsync):
// once it returns they survive the process being killed.
func (j *Journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	return j.writeLocked()
}

func (j *Journal) timerFlush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	if err := j.writeLocked(); err != nil {
		// The records stay buffered; the next flush retries and Append
		// fails once the buffer is full.
		j.log.Warn("journal: writing buffered records failed, retrying", "err", err)
		j.timer.Reset(j.opts.FlushInterval)
	}
}

// writeLocked writes the buffer to the current segment. On failure the
// file is cut back to what it held, so a partial write never stays before
// later records, and the buffer is kept.
func (j *Journal) writeLocked() error {
	if len(j.buf) == 0 {
		return nil
	}
	n, err := j.f.WriteAt(j.buf, j.segSize)
	if err != nil {
		if n > 0 {
			if terr := j.f.Truncate(j.segSize); terr != nil {
				j.log.Error("journal: cutting back a partial write failed", "file", j.f.Name(), "offset", j.segSize, "err", terr)
			}
		}
		return fmt.Errorf("writing %d bytes to %s at offset %d: %w", len(j.buf), j.f.Name(), j.segSize, err)
	}
	j.segSize += int64(n)
	j.buf = j.buf[:0]
	j.dirty = true
	j.broadcastLocked()
	return nil
}

func (j *Journal) broadcastLocked() {
	close(j.notify)
	j.notify = make(chan struct{})
}

// rollLocked starts a new segment. The old file is fsynced and closed by
// the background goroutine, off the Append path.
func (j *Journal) rollLocked() error {
	old, oldFirst, oldSize := j.f, j.segFirst, j.segSize
	if err := j.createSegment(); err != nil {
		return err
	}
	j.segs = append(j.segs, segInfo{first: oldFirst, size: oldSize})
	j.toSync = append(j.toSync, old)
	j.broadcastLocked() // followers of the old segment: it is complete
	j.kickCap()
	return nil
}

func (j *Journal) kickCap() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// background fsyncs every SyncInterval and enforces the size cap when a
// segment is added.
func (j *Journal) background() {
	defer j.wg.Done()
	t := time.NewTicker(j.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if err := j.sync(); err != nil {
				j.log.Warn("journal: fsync failed", "err", err)
			}
		case <-j.kick:
			if err := j.enforceCap(); err != nil {
				j.log.Warn("journal: enforcing the size cap failed", "err", err)
			}
		}
	}
}

// sync fsyncs what was written since the last sync. The fsyncs run
// outside the lock so Append never waits for the disk.
func (j *Journal) sync() error {
	j.mu.Lock()
	f, dirty, dirDirty, rolled := j.f, j.dirty, j.dirDirty, j.toSync
	j.dirty, j.dirDirty, j.toSync = false, false, nil
	j.mu.Unlock()
	var errs []error
	for _, r := range rolled {
		if err := r.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("syncing %s: %w", r.Name(), err))
		}
		if err := r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", r.Name(), err))
		}
	}
	if dirty && f != nil {
		if err := f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("syncing %s: %w", f.Name(), err))
		}
	}
	if dirDirty {
		if err := syncDir(j.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Try again next time.
		j.mu.Lock()
		j.dirty, j.dirDirty = j.dirty || dirty, j.dirDirty || dirDirty
		j.mu.Unlock()
	}
	return errors.Join(errs...)
}

// enforceCap deletes the oldest segments, never the current one, until
// all fit in MaxBytes. Records in them above the acked seq are counted
// as dropped-undelivered: persisted with the cursor before the files go,
// and logged.
func (j *Journal) enforceCap() error {
	j.capMu.Lock()
	defer j.capMu.Unlock()
	j.mu.Lock()
	total := j.segSize + int64(len(j.buf))
	for _, s := range j.segs {
		total += s.size
	}
	var victims []segInfo
	var through uint64 // last seq of the newest victim
	for total > j.opts.MaxBytes && len(victims) < len(j.segs) {
		v := j.segs[len(victims)]
		victims = append(victims, v)
		total -= v.size
		if len(victims) < len(j.segs) {
			through = j.segs[len(victims)].first - 1
		} else {
			through = j.segFirst - 1
		}
	}
	j.mu.Unlock()
	if len(victims) == 0 {
		return nil
	}

	j.stateMu.Lock()
	c := j.cursor
	var dropped uint64
	for i, v := range victims {
		last := through
		if i+1 < len(victims) {
			last = victims[i+1].first - 1
		}
		if lo := max(v.first, c.acked+1); lo <= last {
			dropped += last - lo + 1
		}
	}
	c.dropped += dropped
	c.droppedThrough = max(c.droppedThrough, through)
	// The count is on disk before the records are gone: a crash between
	// the two leaves segments a restart deletes without counting again.
	err := writeFileAtomic(j.dir, cursorFileName, cursorTmpFileName, c.marshal())
	if err == nil {
		j.cursor = c
	}
	j.stateMu.Unlock()
	if err != nil {
		return fmt.Errorf("recording dropped segments before deleting them: %w", err)
	}
	for _, v := range victims {
		if err := os.Remove(filepath.Join(j.dir, segName(v.first))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			j.log.Warn("journal: deleting a segment over the size cap failed", "err", err)
		}
	}
	j.mu.Lock()
	j.segs = j.segs[len(victims):] // only enforceCap removes, under capMu
	j.mu.Unlock()
	if dropped > 0 {
		j.log.Warn("journal: deleted the oldest segments with records not yet delivered",
			"dropped_undelivered", dropped,
			"reason", "journal size cap (--journal-max-bytes) reached before the backend acknowledged them",
			"first_seq", victims[0].first, "last_seq", through, "acked_seq", c.acked,
			"max_bytes", j.opts.MaxBytes, "dropped_undelivered_total", c.dropped)
	} else {
		j.log.Debug("journal: deleted the oldest segments (all delivered)",
			"first_seq", victims[0].first, "last_seq", through, "max_bytes", j.opts.MaxBytes)
	}
	return nil
}

// Acked returns the highest seq the exporter acknowledged and its state
// blob (a copy), as last given to Ack, in this run or before.
func (j *Journal) Acked() (uint64, []byte) {
	j.stateMu.Lock()
	defer j.stateMu.Unlock()
	return j.cursor.acked, bytes.Clone(j.cursor.state)
}

// Ack records that the backend acknowledged every record up to seq, with
// the exporter's state (at most MaxStateBytes). It is durable when Ack
// returns (temp file, fsync, rename, directory fsync: two fsyncs, so call
// it per export batch, not per record). seq may not go backwards nor pass
// the last appended seq.
func (j *Journal) Ack(seq uint64, state []byte) error {
	if len(state) > MaxStateBytes {
		return fmt.Errorf("journal ack: state is %d bytes, at most %d", len(state), MaxStateBytes)
	}
	j.mu.Lock()
	last, closed := j.nextSeq-1, j.closed
	j.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if seq > last {
		return fmt.Errorf("journal ack: seq %d not appended yet (last %d)", seq, last)
	}
	j.stateMu.Lock()
	defer j.stateMu.Unlock()
	if seq < j.cursor.acked {
		return fmt.Errorf("journal ack: seq %d is below the acked seq %d", seq, j.cursor.acked)
	}
	c := j.cursor
	c.acked, c.state = seq, bytes.Clone(state)
	if err := writeFileAtomic(j.dir, cursorFileName, cursorTmpFileName, c.marshal()); err != nil {
		return fmt.Errorf("journal ack: %w", err)
	}
	j.cursor = c
	return nil
}

// Stats reports the journal's size, seqs and losses.
func (j *Journal) Stats() Stats {
	j.stateMu.Lock()
	acked, dropped := j.cursor.acked, j.cursor.dropped
	j.stateMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	s := Stats{
		Bytes:              j.segSize + int64(len(j.buf)),
		Segments:           len(j.segs) + 1,
		FirstSeq:           j.segFirst,
		LastSeq:            j.nextSeq - 1,
		AckedSeq:           acked,
		DroppedUndelivered: dropped,
		Appended:           j.appended,
		Corrupt:            j.corrupt,
		TornTailBytes:      j.tornBytes,
	}
	for _, g := range j.segs {
		s.Bytes += g.size
	}
	if len(j.segs) > 0 {
		s.FirstSeq = j.segs[0].first
	}
	return s
}

// NewReader reads this journal in follow mode: at the end, Next waits
// for the next write to the file (a flush, never a poll) or for ctx.
func (j *Journal) NewReader(fromSeq uint64) (*Reader, error) {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return newReader(followTail{dirTail{j.dir}, j}, fromSeq, j.log), nil
}

// followTail reads what the writer has written, up to its flushed size.
type followTail struct {
	dirTail
	j *Journal
}

func (t followTail) extent(seg uint64) (int64, bool, <-chan struct{}, error) {
	j := t.j
	j.mu.Lock()
	defer j.mu.Unlock()
	if seg < j.segFirst {
		return -1, true, nil, nil
	}
	if j.closed {
		return -1, false, nil, nil
	}
	return j.segSize, false, j.notify, nil
}

// Close writes and fsyncs the buffered records, releases the lock and
// wakes followers, which then end with io.EOF.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.timer.Stop()
	werr := j.writeLocked()
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	j.wg.Wait()
	serr := j.sync()
	j.mu.Lock()
	j.broadcastLocked()
	j.mu.Unlock()
	return errors.Join(werr, serr, j.closeFiles())
}

func (j *Journal) closeFiles() error {
	var errs []error
	if j.f != nil {
		if err := j.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", j.f.Name(), err))
		}
	}
	for _, f := range j.toSync {
		f.Close()
	}
	if j.lock != nil {
		// Closing the descriptor releases the flock.
		if err := j.lock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the journal lock: %w", err))
		}
	}
	return errors.Join(errs...)
}
