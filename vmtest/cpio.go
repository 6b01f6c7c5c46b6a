package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// image is the content of one initramfs archive, keyed by path without the
// leading slash. We write the newc format ourselves instead of staging a
// directory for `cpio -o`: it needs no host tool, no root for /dev/console,
// and the archive is byte-for-byte reproducible, which the cache relies on.
type image map[string]imageEntry

type imageEntry struct {
	mode   fs.FileMode // permission bits plus fs.ModeDir, ModeSymlink or ModeCharDevice
	src    string      // host file for regular files, or
	data   []byte      // inline content
	target string      // symlink target
	major  uint32      // device numbers for character devices
	minor  uint32
}

func (im image) file(dst, src string, perm fs.FileMode) {
	im[clean(dst)] = imageEntry{mode: perm, src: src}
}
func (im image) data(dst string, b []byte, perm fs.FileMode) {
	im[clean(dst)] = imageEntry{mode: perm, data: b}
}
func (im image) dir(dst string) { im[clean(dst)] = imageEntry{mode: fs.ModeDir | 0o755} }
func (im image) symlink(dst, target string) {
	im[clean(dst)] = imageEntry{mode: fs.ModeSymlink | 0o777, target: target}
}
func (im image) chardev(dst string, major, minor uint32) {
	im[clean(dst)] = imageEntry{mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, major: major, minor: minor}
}

func clean(p string) string { return path.Clean("/" + p)[1:] }

// sortedPaths adds missing parent directories and returns every path in an
// order where parents precede children, as the kernel's unpacker needs.
func (im image) sortedPaths() []string {
	for p := range im {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := im[d]; !ok {
				im.dir(d)
			}
		}
	}
	paths := make([]string, 0, len(im))
	for p := range im {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// fingerprint identifies the archive content cheaply: host files by path,
// size and mtime, so a rebuilt busybox or an upgraded iproute2 invalidates
// the cached archive without hashing megabytes every run.
func (im image) fingerprint() (string, error) {
	h := sha256.New()
	for _, p := range im.sortedPaths() {
		e := im[p]
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00%d:%d\x00", p, uint32(e.mode), e.target, e.major, e.minor)
		h.Write(e.data)
		if e.src != "" {
			st, err := os.Stat(e.src)
			if err != nil {
				return "", fmt.Errorf("fingerprinting initramfs: %w", err)
			}
			fmt.Fprintf(h, "%s\x00%d\x00%d\x00", e.src, st.Size(), st.ModTime().UnixNano())
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeFile writes the archive atomically so a killed run leaves no
// truncated image behind for the cache to reuse.
func (im image) writeFile(dst string) error {
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing initramfs: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = im.write(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing initramfs %s: %w", dst, err)
	}
	return os.Rename(tmp, dst)
}

func (im image) write(w io.Writer) error {
	cw := &newcWriter{w: w}
	for _, p := range im.sortedPaths() {
		if err := cw.entry(p, im[p]); err != nil {
			return err
		}
	}
	return cw.trailer()
}

// newcWriter emits the "070701" cpio format described in the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst.
type newcWriter struct {
	w   io.Writer
	ino uint32
	off int64
}

func (cw *newcWriter) entry(name string, e imageEntry) error {
	var mode uint32 = uint32(e.mode.Perm())
	var size int64
	var body io.Reader
	switch {
	case e.mode&fs.ModeDir != 0:
		mode |= 0o040000
	case e.mode&fs.ModeSymlink != 0:
		mode |= 0o120000
		size = int64(len(e.target))
		body = strings.NewReader(e.target)
	case e.mode&fs.ModeCharDevice != 0:
		mode |= 0o020000
	case e.src != "":
		mode |= 0o100000
		f, err := os.Open(e.src)
		if err != nil {
			return fmt.Errorf("adding %s to initramfs: %w", name, err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("adding %s to initramfs: %w", name, err)
		}
		size, body = st.Size(), f
	default:
		mode |= 0o100000
		size, body = int64(len(e.data)), bytes.NewReader(e.data)
	}
	cw.ino++
	nlink := 1
	if e.mode&fs.ModeDir != 0 {
		nlink = 2
	}
	if err := cw.header(name, cw.ino, mode, nlink, size, e.major, e.minor); err != nil {
		return err
	}
	if body != nil {
		n, err := io.Copy(cw.w, body)
		if err != nil {
			return fmt.Errorf("adding %s to initramfs: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("adding %s to initramfs: file changed size while copying", name)
		}
		cw.off += n
	}
	return cw.pad()
}

func (cw *newcWriter) header(name string, ino, mode uint32, nlink int, size int64, rmajor, rminor uint32) error {
	// Fields: ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check. mtime 0 keeps output reproducible.
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	n, err := io.WriteString(cw.w, h+name+"\x00")
	cw.off += int64(n)
	if err != nil {
		return fmt.Errorf("writing initramfs header: %w", err)
	}
	return cw.pad()
}

// pad aligns to 4 bytes, as newc requires after the name and after data.
func (cw *newcWriter) pad() error {
	if r := cw.off % 4; r != 0 {
		n, err := cw.w.Write(make([]byte, 4-r))
		cw.off += int64(n)
		if err != nil {
			return fmt.Errorf("writing initramfs: %w", err)
		}
	}
	return nil
}

func (cw *newcWriter) trailer() error {
	return cw.header("TRAILER!!!", 0, 0, 1, 0, 0, 0)
}

// concatFiles joins cpio archives; the kernel unpacks them in sequence.
func concatFiles(dst string, srcs ...string) error {
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("assembling initramfs: %w", err)
	}
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			out.Close()
			return fmt.Errorf("assembling initramfs: %w", err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return fmt.Errorf("assembling initramfs from %s: %w", s, err)
		}
	}
	return out.Close()
}
