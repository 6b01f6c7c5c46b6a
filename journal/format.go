package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// On-disk format, version 1. All integers are little-endian.
//
// Segment file "<first seq as 16 hex digits>.seg":
//
//	[0:6]  "RTJSEG"
//	[6:8]  format version (1)
//	then records back to back.
//
// Record:
//
//	[0:4]   recordMagic, the sync marker a reader scans for after damage
//	[4:8]   CRC-32C (Castagnoli) of bytes [8:28] and the payload
//	[8:12]  payload length (at most MaxRecordBytes)
//	[12:20] seq (never 0)
//	[20:28] time, unix nanoseconds
//	[28:]   payload
//
// The CRC covers the length, so a damaged length is caught like damaged
// payload; a damaged magic or CRC field just fails the check.
const (
	formatVersion     = 1
	segHeaderSize     = 8
	recordHeaderSize  = 28
	segSuffix         = ".seg"
	lockFileName      = "lock"
	cursorFileName    = "cursor"
	cursorTmpFileName = "cursor.tmp"

	// MaxRecordBytes bounds a payload. It is part of the format, not an
	// option: a reader in another process must reject the same lengths
	// the writer would never write, so a damaged length cannot make it
	// buffer gigabytes.
	MaxRecordBytes = 1 << 20
	// MaxStateBytes bounds the exporter state blob stored with the cursor.
	MaxStateBytes = 64 << 10
)

var (
	segMagic = [6]byte{'R', 'T', 'J', 'S', 'E', 'G'}
	// Not ASCII and not a small varint, so encoded events rarely contain it
	// and a resync rarely has to try a false candidate.
	recordMagic = [4]byte{0xD7, 0x9E, 0x1F, 0xA3}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

func segHeader() []byte {
	h := make([]byte, segHeaderSize)
	copy(h, segMagic[:])
	binary.LittleEndian.PutUint16(h[6:], formatVersion)
	return h
}

// appendRecord encodes one record onto b.
func appendRecord(b []byte, seq uint64, unixNano int64, payload []byte) []byte {
	off := len(b)
	b = append(b, make([]byte, recordHeaderSize)...)
	h := b[off : off+recordHeaderSize]
	copy(h, recordMagic[:])
	binary.LittleEndian.PutUint32(h[8:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[12:], seq)
	binary.LittleEndian.PutUint64(h[20:], uint64(unixNano))
	crc := crc32.Update(0, castagnoli, h[8:])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:], crc)
	return append(b, payload...)
}

type decodeStatus int

const (
	decOK    decodeStatus = iota
	decShort              // b is a valid prefix so far: more bytes may complete it
	decBad                // no record starts at b[0]
)

// decodeRecord decodes the record at the start of b. On decOK, n is the
// record's size and payload aliases b.
func decodeRecord(b []byte) (seq uint64, unixNano int64, payload []byte, n int, st decodeStatus) {
	if len(b) < len(recordMagic) {
		if bytes.Equal(b, recordMagic[:len(b)]) {
			return 0, 0, nil, 0, decShort
		}
		return 0, 0, nil, 0, decBad
	}
	if [4]byte(b[:4]) != recordMagic {
		return 0, 0, nil, 0, decBad
	}
	if len(b) < recordHeaderSize {
		return 0, 0, nil, 0, decShort
	}
	l := binary.LittleEndian.Uint32(b[8:])
	if l > MaxRecordBytes {
		return 0, 0, nil, 0, decBad
	}
	n = recordHeaderSize + int(l)
	if len(b) < n {
		return 0, 0, nil, 0, decShort
	}
	seq = binary.LittleEndian.Uint64(b[12:])
	if seq == 0 {
		return 0, 0, nil, 0, decBad
	}
	crc := crc32.Update(0, castagnoli, b[8:recordHeaderSize])
	crc = crc32.Update(crc, castagnoli, b[recordHeaderSize:n])
	if crc != binary.LittleEndian.Uint32(b[4:]) {
		return 0, 0, nil, 0, decBad
	}
	return seq, int64(binary.LittleEndian.Uint64(b[20:])), b[recordHeaderSize:n], n, decOK
}

// findRecord returns the offset, at least 1, of the first complete valid
// record in b whose seq is above after, or -1. It is the resync after
// damage: magic, then length, CRC and an increasing seq must all agree,
// so payload bytes that happen to contain the magic are not taken for a
// record.
func findRecord(b []byte, after uint64) int {
	for i := 1; i < len(b); {
		k := bytes.Index(b[i:], recordMagic[:])
		if k < 0 {
			return -1
		}
		i += k
		if seq, _, _, _, st := decodeRecord(b[i:]); st == decOK && seq > after {
			return i
		}
		i++
	}
	return -1
}

// nextMagic returns the offset, at least 1, of the next possible record
// start in b: a full magic, or a magic prefix at the very end (more bytes
// may complete it). len(b) if there is none.
func nextMagic(b []byte) int {
	if len(b) <= 1 {
		return len(b)
	}
	if k := bytes.Index(b[1:], recordMagic[:]); k >= 0 {
		return 1 + k
	}
	for i := max(1, len(b)-len(recordMagic)+1); i < len(b); i++ {
		if bytes.HasPrefix(recordMagic[:], b[i:]) {
			return i
		}
	}
	return len(b)
}

func segName(first uint64) string { return fmt.Sprintf("%016x%s", first, segSuffix) }

func parseSegName(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(s) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// listSegments returns the first seqs of the segments in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing journal segments in %s: %w", dir, err)
	}
	var segs []uint64
	for _, e := range ents {
		if v, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, v)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// cursorState is the delivery cursor file: what the exporter acknowledged
// and what the size cap dropped before it could.
//
//	[0:6]   "RTJCUR"
//	[6:8]   format version
//	[8:16]  acked seq
//	[16:24] dropped-undelivered count
//	[24:32] droppedThrough: the last seq of the newest segment the cap
//	        deleted (a restart finishes an interrupted deletion without
//	        counting it twice)
//	[32:36] state length
//	[36:]   state, then CRC-32C of everything before it
type cursorState struct {
	acked          uint64
	dropped        uint64
	droppedThrough uint64
	state          []byte
}

var cursorMagic = [6]byte{'R', 'T', 'J', 'C', 'U', 'R'}

const cursorHeaderSize = 36

func (c *cursorState) marshal() []byte {
	b := make([]byte, cursorHeaderSize, cursorHeaderSize+len(c.state)+4)
	copy(b, cursorMagic[:])
	binary.LittleEndian.PutUint16(b[6:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], c.acked)
	binary.LittleEndian.PutUint64(b[16:], c.dropped)
	binary.LittleEndian.PutUint64(b[24:], c.droppedThrough)
	binary.LittleEndian.PutUint32(b[32:], uint32(len(c.state)))
	b = append(b, c.state...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadCursor = errors.New("damaged cursor file")

func unmarshalCursor(b []byte) (cursorState, error) {
	if len(b) < cursorHeaderSize+4 || [6]byte(b[:6]) != cursorMagic {
		return cursorState{}, errBadCursor
	}
	if v := binary.LittleEndian.Uint16(b[6:]); v != formatVersion {
		return cursorState{}, fmt.Errorf("cursor format version %d, this routetrace reads %d", v, formatVersion)
	}
	l := binary.LittleEndian.Uint32(b[32:])
	if l > MaxStateBytes || len(b) != cursorHeaderSize+int(l)+4 {
		return cursorState{}, errBadCursor
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return cursorState{}, errBadCursor
	}
	return cursorState{
		acked:          binary.LittleEndian.Uint64(b[8:]),
		dropped:        binary.LittleEndian.Uint64(b[16:]),
		droppedThrough: binary.LittleEndian.Uint64(b[24:]),
		state:          bytes.Clone(b[cursorHeaderSize : cursorHeaderSize+int(l)]),
	}, nil
}

// writeFileAtomic replaces dir/name with data so that a crash leaves the
// old or the new content, never a mix: temp file, fsync, rename, fsync dir.
func writeFileAtomic(dir, name, tmpName string, data []byte) error {
	tmp := filepath.Join(dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	dst := filepath.Join(dir, name)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, dst, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
