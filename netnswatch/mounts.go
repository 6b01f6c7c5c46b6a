package netnswatch

import (
	"bytes"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/sys/unix"
)

// mountTable lists the network namespaces bind-mounted in our mount
// namespace: `ip netns add` (/run/netns), container runtimes
// (/run/docker/netns, /run/containerd...), and any other place. Every nsfs
// file reachable by a path is such a mount, so mountinfo finds them all
// without a list of runtime directories to keep up to date.
//
// The file stays open: poll on it reports POLLPRI once the mount table has
// changed since the last poll, so an unchanged table is never read again.
type mountTable struct {
	fd     int
	pfd    [1]unix.PollFd
	buf    []byte
	mounts []nsMount // from the last read
	read   bool
}

type nsMount struct {
	inode uint32
	path  string
}

func openMountTable(path string) (*mountTable, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	m := &mountTable{fd: fd, buf: make([]byte, 64<<10)}
	m.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLPRI}
	return m, nil
}

func (m *mountTable) close() { unix.Close(m.fd) }

// refresh re-reads the table if it changed; it reports whether it read.
func (m *mountTable) refresh() (bool, error) {
	if m.read {
		m.pfd[0].Revents = 0
		n, err := unix.Poll(m.pfd[:], 0)
		if err != nil && err != unix.EINTR {
			return false, fmt.Errorf("polling mountinfo: %w", err)
		}
		// Polling consumes the change, so reading next cannot miss one: a
		// change after the poll shows in this read or at the next poll.
		// An interrupted poll reads, to be safe.
		if err == nil && (n == 0 || m.pfd[0].Revents&(unix.POLLPRI|unix.POLLERR) == 0) {
			return false, nil
		}
	}
	if _, err := unix.Seek(m.fd, 0, io.SeekStart); err != nil {
		return false, fmt.Errorf("rewinding mountinfo: %w", err)
	}
	n := 0
	for {
		if n == len(m.buf) {
			m.buf = append(m.buf, make([]byte, len(m.buf))...)
		}
		r, err := unix.Read(m.fd, m.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("reading mountinfo: %w", err)
		}
		if r == 0 {
			break
		}
		n += r
	}
	m.mounts = parseMountinfo(m.buf[:n], m.mounts[:0])
	m.read = true
	return true, nil
}

// parseMountinfo appends the network namespace bind mounts in a
// /proc/PID/mountinfo text to out. A line is
//
//	ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
//
// and for a namespace bind mount FSTYPE is nsfs and ROOT is net:[INODE].
func parseMountinfo(b []byte, out []nsMount) []nsMount {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		sep := bytes.Index(line, []byte(" - "))
		if sep < 0 || !bytes.HasPrefix(line[sep+3:], []byte("nsfs ")) {
			continue
		}
		fields := bytes.SplitN(line[:sep], []byte(" "), 6)
		if len(fields) < 5 {
			continue
		}
		root, ok := bytes.CutPrefix(fields[3], []byte("net:["))
		if !ok || len(root) < 2 || root[len(root)-1] != ']' {
			continue // another namespace type (mnt, uts...)
		}
		ino, err := strconv.ParseUint(string(root[:len(root)-1]), 10, 32)
		if err != nil {
			continue
		}
		out = append(out, nsMount{inode: uint32(ino), path: unescapeMountPath(fields[4])})
	}
	return out
}

// unescapeMountPath undoes the octal escapes the kernel writes for space,
// tab, newline and backslash in mount points (\040, \011, \012, \134).
func unescapeMountPath(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && isOctal(b[i+1]) && isOctal(b[i+2]) && isOctal(b[i+3]) {
			out = append(out, (b[i+1]-'0')<<6|(b[i+2]-'0')<<3|(b[i+3]-'0'))
			i += 3
			continue
		}
		out = append(out, b[i])
	}
	return string(out)
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
