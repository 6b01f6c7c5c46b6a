package tracer

import (
	"bytes"
	"errors"
	"time"
	"unsafe"
)

// Process is the kernel's record of a process (bpf/include/proc.h), taken
// the first time the process (as one exec, in one set of cgroups) made a
// change or a request: so a process that exits a millisecond after its
// change, and whose cgroup is removed right after, is still named. Events
// name it by Actor.Cookie; Options.OnProcess receives it before the first
// event that carries its cookie.
type Process struct {
	Cookie uint64
	Time   time.Time // when the record was taken
	Pid    uint32    // the thread that acted first
	Tgid   uint32
	PPid   uint32
	UID    uint32
	// The chosen cgroup: the deepest of the process's cgroups over every
	// hierarchy, ties going to cgroup2 (cgroup2 on a pure v2 node; on a
	// hybrid one a v1 hierarchy such as memory or name=systemd when it is
	// nested deeper).
	CgroupID    uint64 // its kernfs id (the cgroup directory's inode)
	Hierarchy   uint32 // its v1 hierarchy id (/proc/cgroups); 0 for cgroup2
	Cgroup2     bool   // it is on the cgroup2 (default) hierarchy
	CgroupLevel uint32 // its depth: 0 for a hierarchy's root
	Cgroup      string // its path from the hierarchy's root: "/system.slice/x.service"
	Cgroup2ID   uint64 // the process's cgroup2 id (what Actor.CgroupID holds)
	Argv        []string
	// Exe is the executable's path from its filesystem's root (mounts are
	// not crossed: a binary on a separately mounted /usr reads "/bin/ip").
	Exe       string
	Truncated Truncation // what the kernel cut short
}

// Truncation says which of a Process's strings the kernel cut short.
type Truncation uint8

const (
	// TruncatedArgv: argv was longer than 1024 bytes (the first 1024 are
	// kept), or not readable (Argv is empty).
	TruncatedArgv Truncation = 1 << iota
	// TruncatedExe: the path had more than 16 components or 256 bytes;
	// its leaf end is kept.
	TruncatedExe
	// TruncatedCgroup: likewise, for the cgroup path (512 bytes).
	TruncatedCgroup
)

// procRecord is the ring buffer's RT_KIND_PROC record, laid out by the C
// struct rt_proc (bpf2go -type rt_proc).
type procRecord = fibRtProc

const (
	kindProc = 5

	procSize = int(unsafe.Sizeof(procRecord{}))
	// kindOffset is where both records keep their kind: the C
	// static_asserts it, TestRecordLayoutMatchesBTF checks both.
	kindOffset = int(unsafe.Offsetof(record{}.Kind))

	procFlagCgroup2 = 1 << 0
)

var errShortProc = errors.New("ring buffer PROC record shorter than rt_proc")

// recordKind is the kind byte of a raw ring buffer sample, 0 if too short.
func recordKind(raw []byte) uint8 {
	if len(raw) <= kindOffset {
		return 0
	}
	return raw[kindOffset]
}

// decodeProcess turns a raw RT_KIND_PROC sample into a Process. Unlike
// the event path it allocates: it runs once per process, not per change.
func decodeProcess(c *clock, raw []byte) (*Process, error) {
	if len(raw) < procSize {
		return nil, errShortProc
	}
	var r procRecord
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), procSize), raw)
	p := &Process{
		Cookie:      r.Cookie,
		Time:        c.at(r.TsNs),
		Pid:         r.Pid,
		Tgid:        r.Tgid,
		PPid:        r.Ppid,
		UID:         r.Uid,
		CgroupID:    r.CgroupId,
		Hierarchy:   r.Hierarchy,
		Cgroup2:     r.Flags&procFlagCgroup2 != 0,
		CgroupLevel: r.CgroupLevel,
		Cgroup2ID:   r.Cgroup2Id,
		Truncated:   Truncation(r.Flags>>1) & (TruncatedArgv | TruncatedExe | TruncatedCgroup),
	}
	p.Exe = string(cBytes(r.Exe[:], int(r.ExeLen)))
	p.Cgroup = string(cBytes(r.Cgroup[:], int(r.CgroupLen)))
	p.Argv = splitArgv(cBytes(r.Argv[:], int(r.ArgvLen)))
	return p, nil
}

// cBytes is the first n bytes of a C char array (n bounded by its size).
func cBytes(a []int8, n int) []byte {
	n = min(max(n, 0), len(a))
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(a))), len(a))[:n]
}

// splitArgv splits the NUL-separated arguments of mm->arg_start..arg_end
// (the last one NUL-terminated, unless cut short).
func splitArgv(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}
