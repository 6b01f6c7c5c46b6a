package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Record is one journal entry.
type Record struct {
	Seq  uint64
	Time time.Time
	// Payload aliases the Reader's buffer: it is valid until the next call
	// of Next or Close. Copy it to keep it.
	Payload []byte
}

// ReaderStats counts what a Reader skipped.
type ReaderStats struct {
	// Records returned by Next.
	Records uint64
	// Corrupt counts damaged regions skipped: a CRC mismatch, garbage
	// between records, a segment that ends mid-record although a newer
	// segment follows it. Each region is logged with its file and offset.
	Corrupt uint64
	// Gaps counts jumps in seq that no damage explains: segments the size
	// cap deleted before this reader reached them, or that were already
	// gone when it started at fromSeq.
	Gaps uint64
	// Missing is the number of seqs skipped over by gaps and damage.
	Missing uint64
}

// segSource is an open segment.
type segSource interface {
	io.ReaderAt
	io.Closer
}

// tail is where a Reader's segments come from, and how far it may read
// the newest one.
type tail interface {
	list() ([]uint64, error)
	open(seg uint64) (segSource, string, error)
	// extent reports how many bytes of segment seg may be read (-1: up to
	// its end of file) and whether seg is complete, a newer segment
	// existing. wait, if not nil, is closed when that may change; nil means
	// the end of seg is the end of the journal for now (io.EOF).
	extent(seg uint64) (limit int64, final bool, wait <-chan struct{}, err error)
}

// dirTail reads a journal directory another process may be writing.
type dirTail struct{ dir string }

func (d dirTail) list() ([]uint64, error) { return listSegments(d.dir) }

func (d dirTail) open(seg uint64) (segSource, string, error) {
	p := filepath.Join(d.dir, segName(seg))
	f, err := os.Open(p)
	return f, p, err
}

func (d dirTail) extent(seg uint64) (int64, bool, <-chan struct{}, error) {
	segs, err := d.list()
	if err != nil {
		return 0, false, nil, err
	}
	// The writer writes all of a segment before it creates the next, so
	// once a newer one exists this one is complete. The caller reads again
	// after this call, so bytes written between its last read and the
	// listing are not mistaken for a truncation.
	return -1, len(segs) > 0 && segs[len(segs)-1] > seg, nil, nil
}

// A Reader returns a journal's records in seq order. Not safe for
// concurrent use; open one Reader per goroutine.
type Reader struct {
	t    tail
	log  *slog.Logger
	from uint64
	last uint64 // seq of the last record decoded (returned or skipped as < from)

	seg      uint64 // first seq of the open segment
	src      segSource
	path     string
	fileOff  int64  // file offset of buf[0]
	buf      []byte // bytes read from src; buf[pos:] not yet decoded
	pos      int
	limit    int64 // from the last extent call
	damaged  int64 // file offset where an unreported damaged region began, -1: none
	lastEnd  int64 // file offset just past the last record decoded in this segment
	headerOK bool
	// afterDamage: damage was reported since the last record, so a jump
	// in seq before the next one is the damage's, not a gap.
	afterDamage bool

	stats ReaderStats
}

const readChunk = 64 << 10

// OpenReader reads the journal in dir from another process than its
// writer, without the lock and without writing anything. It is safe while
// a writer appends: a partial record at the very end of the newest
// segment is not yet written, and Next returns io.EOF there, as at the
// end of the journal. Records with a seq below fromSeq are skipped; 0 or
// 1 start at the oldest record.
func OpenReader(dir string, fromSeq uint64) (*Reader, error) {
	if _, err := listSegments(dir); err != nil {
		return nil, fmt.Errorf("opening journal reader: %w", err)
	}
	return newReader(dirTail{dir}, fromSeq, slog.Default()), nil
}

func newReader(t tail, fromSeq uint64, log *slog.Logger) *Reader {
	return &Reader{t: t, log: log, from: fromSeq, damaged: -1, limit: -1}
}

// Stats returns what the reader has returned and skipped so far.
func (r *Reader) Stats() ReaderStats { return r.stats }

// Gaps is Stats().Gaps: how many times records were missing because the
// size cap deleted their segment first.
func (r *Reader) Gaps() uint64 { return r.stats.Gaps }

// Close releases the open segment.
func (r *Reader) Close() error {
	if r.src == nil {
		return nil
	}
	err := r.src.Close()
	r.src = nil
	return err
}

// Next returns the next record. At the end of the journal a Reader from
// OpenReader returns io.EOF (call Next again later to see newer records);
// one from Journal.NewReader waits for the writer's next flush, or until
// ctx ends (its error is returned), or returns io.EOF once the Journal is
// closed and every record read. Damage is skipped, counted and logged,
// never returned as an error; errors are I/O errors on the files.
func (r *Reader) Next(ctx context.Context) (Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		if r.src == nil {
			ok, err := r.openNext()
			if err != nil {
				return Record{}, err
			}
			if !ok {
				return Record{}, io.EOF
			}
		}
		b := r.buf[r.pos:]
		seq, ns, payload, n, st := decodeRecord(b)
		if st == decOK && seq <= r.last {
			// A valid record out of order can only be an old record
			// inside a payload found by a resync: not the stream.
			st = decBad
		}
		switch st {
		case decOK:
			start := r.fileOff + int64(r.pos)
			r.pos += n
			r.lastEnd = start + int64(n)
			r.reportDamage(start)
			afterDamage := r.afterDamage
			r.afterDamage = false
			if seq < r.from {
				r.last = seq
				continue
			}
			r.account(seq, afterDamage)
			r.last = seq
			r.stats.Records++
			return Record{Seq: seq, Time: time.Unix(0, ns), Payload: payload}, nil
		case decBad:
			r.markDamaged()
			r.pos += nextMagic(b)
		case decShort:
			if got, err := r.fill(r.limit); err != nil {
				return Record{}, err
			} else if got > 0 {
				continue
			}
			limit, final, wait, err := r.t.extent(r.seg)
			if err != nil {
				return Record{}, err
			}
			r.limit = limit
			if got, err := r.fill(limit); err != nil {
				return Record{}, err
			} else if got > 0 {
				continue
			}
			b = r.buf[r.pos:]
			if len(b) > 0 {
				// A record cut short. If a valid record follows, the
				// cut one is damage; if not, it may be a write in
				// progress at the end of the newest segment.
				if i := findRecord(b, r.last); i > 0 {
					r.markDamaged()
					r.pos += i
					continue
				}
				if final {
					r.markDamaged()
				}
			}
			if final {
				r.reportDamage(r.fileOff + int64(len(r.buf)))
				if err := r.Close(); err != nil {
					return Record{}, fmt.Errorf("closing %s: %w", r.path, err)
				}
				continue
			}
			if wait == nil {
				return Record{}, io.EOF
			}
			select {
			case <-wait:
			case <-ctx.Done():
				return Record{}, ctx.Err()
			}
		}
	}
}

// account counts a jump in seq before the record seq.
func (r *Reader) account(seq uint64, afterDamage bool) {
	expected := seq
	if r.last > 0 && r.last+1 > r.from {
		expected = r.last + 1
	} else if r.from > 0 {
		expected = r.from
	}
	if seq <= expected {
		return
	}
	r.stats.Missing += seq - expected
	if afterDamage {
		return // counted and logged as damage
	}
	r.stats.Gaps++
	r.log.Warn("journal: records missing, their segment was deleted (size cap) before this reader reached them",
		"first_missing", expected, "last_missing", seq-1, "count", seq-expected)
}

func (r *Reader) markDamaged() {
	if r.damaged < 0 {
		r.damaged = r.fileOff + int64(r.pos)
	}
}

// reportDamage counts and logs a damaged region ending at end. Damage is
// reported only once a valid record or a newer segment follows it, so a
// write in progress is never taken for damage.
func (r *Reader) reportDamage(end int64) bool {
	if r.damaged < 0 {
		return false
	}
	r.stats.Corrupt++
	r.log.Warn("journal: skipped damaged bytes (CRC mismatch, garbage or a truncated record); the records in them are lost",
		"file", r.path, "offset", r.damaged, "bytes", end-r.damaged)
	r.damaged = -1
	r.afterDamage = true
	return true
}

// openNext opens the segment to read next: at first the one holding
// r.from, then the one after r.seg. false: none (yet).
func (r *Reader) openNext() (bool, error) {
	for attempt := 0; ; attempt++ {
		segs, err := r.t.list()
		if err != nil {
			return false, err
		}
		var next uint64
		var found bool
		if r.seg == 0 {
			// The newest segment starting at or before from; from below
			// the oldest starts at the oldest.
			if len(segs) > 0 {
				next, found = segs[0], true
				for _, s := range segs {
					if s <= r.from {
						next = s
					}
				}
			}
		} else if i, _ := slices.BinarySearch(segs, r.seg+1); i < len(segs) {
			next, found = segs[i], true
		}
		if !found {
			return false, nil
		}
		src, path, err := r.t.open(next)
		if errors.Is(err, fs.ErrNotExist) && attempt < 100 {
			continue // deleted by the size cap since the listing
		}
		if err != nil {
			return false, fmt.Errorf("opening journal segment: %w", err)
		}
		r.seg, r.src, r.path = next, src, path
		r.buf, r.pos, r.fileOff, r.lastEnd, r.limit = r.buf[:0], 0, 0, 0, -1
		r.damaged = -1
		var h [segHeaderSize]byte
		n, err := src.ReadAt(h[:], 0)
		if err != nil && err != io.EOF {
			return false, fmt.Errorf("reading the header of %s: %w", path, err)
		}
		r.headerOK = n == segHeaderSize && bytes.Equal(h[:6], segMagic[:])
		if r.headerOK {
			if v := binary.LittleEndian.Uint16(h[6:]); v != formatVersion {
				return false, fmt.Errorf("%s: journal format version %d, this routetrace reads %d", path, v, formatVersion)
			}
			r.fileOff = segHeaderSize
		} else {
			// Segments appear whole-headed (created under a temporary
			// name), so a bad header is damage; records after it are
			// still found by their magic.
			r.damaged = 0
		}
		return true, nil
	}
}

// fill reads more of the segment into buf, at most up to limit (-1: no
// limit). It returns how many bytes it added.
func (r *Reader) fill(limit int64) (int, error) {
	if r.pos > 0 {
		// The last Record's payload aliased buf: Next's contract.
		n := copy(r.buf, r.buf[r.pos:])
		r.buf = r.buf[:n]
		r.fileOff += int64(r.pos)
		r.pos = 0
	}
	at := r.fileOff + int64(len(r.buf))
	want := max(readChunk, len(r.buf))
	if limit >= 0 {
		if at >= limit {
			return 0, nil
		}
		want = int(min(int64(want), limit-at))
	}
	r.buf = slices.Grow(r.buf, want)
	n, err := r.src.ReadAt(r.buf[len(r.buf):len(r.buf)+want], at)
	r.buf = r.buf[:len(r.buf)+n]
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("reading %s at offset %d: %w", r.path, at, err)
	}
	return n, nil
}
