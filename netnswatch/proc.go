package netnswatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procScanner finds the network namespace of every process under /proc,
// and on request of every thread, without allocating per process: one
// getdents buffer reused for every pass, paths built in a fixed array, and
// readlink of the ns/net link, which names the namespace's inode without
// opening anything. The fixed buffers live in this heap object, which the
// Go collector never moves, so their addresses can go to raw syscalls.
type procScanner struct {
	procFd int
	self   []byte // our pid in decimal: our threads never keep a namespace
	dents  []byte // getdents of /proc
	tdents []byte // getdents of /proc/PID/task
	path   [96]byte
	link   [32]byte
	stx    unix.Statx_t

	// Counts of the last pass, for logs and the benchmark.
	processes, threads, denied int
}

func openProc(root string, selfPid int) (*procScanner, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", root, err)
	}
	return &procScanner{
		procFd: fd,
		self:   fmt.Appendf(nil, "%d", selfPid),
		dents:  make([]byte, 32<<10),
		tdents: make([]byte, 8<<10),
	}, nil
}

func (p *procScanner) close() { unix.Close(p.procFd) }

// scan records in seen the namespace of every process but ours, and with
// threads also of every thread of a process that has more than one (a
// thread may have entered another namespace with setns: CNI plugins do).
func (p *procScanner) scan(seen map[uint32]source, threads bool) error {
	if _, err := unix.Seek(p.procFd, 0, io.SeekStart); err != nil {
		return fmt.Errorf("rewinding /proc: %w", err)
	}
	p.processes, p.threads, p.denied = 0, 0, 0
	for {
		n, err := unix.Getdents(p.procFd, p.dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("listing /proc: %w", err)
		}
		if n == 0 {
			return nil
		}
		for off := 0; off < n; {
			reclen := int(binary.NativeEndian.Uint16(p.dents[off+16:]))
			name := direntName(p.dents[off : off+reclen])
			off += reclen
			pid, ok := parseID(name)
			if !ok || bytes.Equal(name, p.self) {
				continue
			}
			p.processes++
			if ino, ok := p.nsInode(name, nil); ok {
				addProcess(seen, ino, pid, false)
			}
			if threads {
				p.scanThreads(seen, name, pid)
			}
		}
	}
}

// scanThreads records the namespaces of the threads of pid other than its
// leader. The link count of /proc/PID/task is 2 plus the number of threads
// (proc_task_getattr), so a single-threaded process costs one statx.
func (p *procScanner) scanThreads(seen map[uint32]source, pidName []byte, pid uint32) {
	n := copy(p.path[:], pidName)
	n += copy(p.path[n:], "/task\x00")
	if statx(p.procFd, &p.path[0], unix.STATX_NLINK, &p.stx) != 0 || p.stx.Nlink <= 3 {
		return
	}
	fd, errno := openat(p.procFd, &p.path[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if errno != 0 {
		return // the process exited
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Getdents(fd, p.tdents)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		for off := 0; off < n; {
			reclen := int(binary.NativeEndian.Uint16(p.tdents[off+16:]))
			name := direntName(p.tdents[off : off+reclen])
			off += reclen
			tid, ok := parseID(name)
			if !ok || tid == pid {
				continue
			}
			p.threads++
			if ino, ok := p.nsInode(pidName, name); ok {
				addProcess(seen, ino, tid, true)
			}
		}
	}
}

// nsInode reads the link PID/ns/net, or PID/task/TID/ns/net when tid is
// given: "net:[INODE]". Reading the link costs about half of a stat
// through it, which also looks up the namespace's nsfs dentry.
// Errors are expected (the process exited, or is a zombie with no
// namespaces left); EACCES is counted, since it means a whole class of
// processes is invisible (not root).
func (p *procScanner) nsInode(pid, tid []byte) (uint32, bool) {
	n := copy(p.path[:], pid)
	if tid != nil {
		n += copy(p.path[n:], "/task/")
		n += copy(p.path[n:], tid)
	}
	copy(p.path[n:], "/ns/net\x00")
	n, errno := readlinkat(p.procFd, &p.path[0], p.link[:])
	switch errno {
	case 0:
		return parseNetLink(p.link[:n])
	case unix.EACCES, unix.EPERM:
		p.denied++
	}
	return 0, false
}

// parseNetLink parses the target of an ns/net link, "net:[4026531840]".
// Namespace inodes come from the kernel's proc inode allocator, which
// hands out 32-bit numbers: the value events carry.
func parseNetLink(link []byte) (uint32, bool) {
	digits, ok := bytes.CutPrefix(link, []byte("net:["))
	if !ok || len(digits) < 2 || digits[len(digits)-1] != ']' {
		return 0, false
	}
	return parseID(digits[:len(digits)-1])
}

// addProcess notes that process (or thread) id is in namespace ino. The
// first process seen is kept, a process rather than a thread, and any
// bind mount already noted.
func addProcess(seen map[uint32]source, ino, id uint32, thread bool) {
	s, ok := seen[ino]
	if !ok || s.pid == 0 || (s.thread && !thread) {
		s.pid, s.thread = id, thread
		seen[ino] = s
	}
}

// threadInode reads /proc/TID/ns/net: a thread's own directory is
// reachable from /proc by its id, though getdents does not list it.
func (p *procScanner) threadInode(tid uint32) (uint32, bool) {
	b := strconv.AppendUint(p.path[:0], uint64(tid), 10)
	return p.nsInode(b, nil)
}

// direntName returns the name of one linux_dirent64 record (d_ino 8, d_off
// 8, d_reclen 2, d_type 1, then the NUL-terminated name).
func direntName(rec []byte) []byte {
	name := rec[19:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return name
}

// parseID parses a /proc entry name that is a pid; other entries (self,
// net, sys...) are not.
func parseID(name []byte) (uint32, bool) {
	if len(name) == 0 || len(name) > 10 {
		return 0, false
	}
	var v uint64
	for _, c := range name {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v == 0 || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// statx, readlinkat and openat take a NUL-terminated path in a buffer the caller owns:
// x/sys/unix converts a Go string with an allocation per call.
func statx(dirfd int, path *byte, mask int, stx *unix.Statx_t) syscall.Errno {
	_, _, errno := syscall.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(path)), 0, uintptr(mask), uintptr(unsafe.Pointer(stx)), 0)
	return errno
}

func readlinkat(dirfd int, path *byte, buf []byte) (int, syscall.Errno) {
	n, _, errno := syscall.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(path)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	return int(n), errno
}

func openat(dirfd int, path *byte, flags int) (int, syscall.Errno) {
	fd, _, errno := syscall.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(path)), uintptr(flags), 0, 0, 0)
	return int(fd), errno
}
