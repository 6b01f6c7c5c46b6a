// Package journal is routetrace's node-local flight recorder: every route
// change is appended here first; the OTLP exporter reads it in order and
// records how far the backend acknowledged; `routetrace history` reads it
// from another process for forensics. Records are opaque payloads with a
// time and a seq, 1, 2, 3, ... over the journal's whole life, continuing
// across restarts.
//
// # Layout
//
// Options.Dir holds segment files named by the seq of their first record
// (0000000000000001.seg, 16 hex digits, so they sort), the delivery
// cursor (cursor) and the writer's lock (lock, holding its pid). A
// segment starts with a magic and the format version; each record is a
// sync magic, a CRC-32C over its length, seq, time and payload, then
// those. A payload is at most MaxRecordBytes.
//
// # Guarantees
//
// One writer per directory: Open takes an exclusive flock and fails with
// ErrLocked, naming the holder's pid, if another process has it.
//
// Process killed (kill -9, OOM, panic): Append buffers in memory; the
// buffer is written with write(2) at most Options.FlushInterval (20 ms)
// after an append, or sooner when Options.BufferBytes fill. So a kill
// loses at most the records appended in the last FlushInterval; none
// whose Flush returned. A write cut mid-record leaves a torn tail: the
// next Open truncates it back to the last good record, logs the file and
// offset, and continues the seqs after that record.
//
// Power loss or kernel crash: written records are fsynced every
// Options.SyncInterval (1 s) and on Close, so at most FlushInterval +
// SyncInterval of records are lost. Ack is durable when it returns (temp
// file, fsync, rename, directory fsync). If power loss takes records the
// exporter had already acknowledged, the seqs continue above the acked
// seq, so no new record is ever taken for delivered.
//
// Size cap: after each new segment, the oldest whole segments (never the
// current one) are deleted until all fit in Options.MaxBytes. This runs
// beside Append, so the cap can be exceeded by what is appended while it
// runs, about a segment at most. Records deleted before the exporter
// acknowledged them are never dropped silently: they are counted as
// dropped-undelivered in the cursor file before the files go (so the
// count survives restarts and a crash cannot count them twice), logged
// with slog.Warn with the count and the reason, and reported in
// Stats.DroppedUndelivered; a reader that needed them reports a gap
// (ReaderStats.Gaps, Missing).
//
// Corruption: a damaged record (flipped bits, garbage, a record cut
// short) is detected by its CRC or framing and costs that record only,
// or the records the damaged bytes overlap: readers log the file and
// offset, count it (ReaderStats.Corrupt) and resync at the next record
// whose magic, length, CRC and increasing seq all agree; the rest
// replays. A segment cut short with newer segments after it loses its
// last records only. Open scans the newest segment the same way
// (Stats.Corrupt, Stats.TornTailBytes). A resync could take a complete
// journal record embedded in a damaged record's payload for a real one;
// route events do not embed journal records.
//
// Readers: Journal.NewReader follows the writer (woken by its writes,
// never polling); OpenReader reads from another process without the lock,
// safely while the writer appends (a partial record at the end of the
// newest segment is not written yet, io.EOF, not damage).
package journal
