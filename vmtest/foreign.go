package main

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// fetchDeb downloads a Debian package built for an architecture through
// vmtest's own apt (apt.go) and returns the .deb's path.
func fetchDeb(c *cache, pkg string, a *arch) (string, error) { return c.apt.download(pkg, a.name) }

// sysroot finds the guest's files on the host. For the host's own
// architecture that is the host's /; for a foreign one, Debian packages of
// that architecture unpacked side by side in the cache, which is what the
// guest's / would hold had dpkg installed them. So foreign binaries never
// need the host's dpkg to know their architecture.
type sysroot struct {
	trees []string // host directories laid out like the guest's /
	pkgOf map[string]string
}

func hostSysroot() *sysroot { return &sysroot{trees: []string{"/"}} }

// find returns the host file holding the guest's file p (a regular file,
// symlinks followed inside the tree), or "".
func (s *sysroot) find(p string) string {
	for _, t := range s.trees {
		if h := resolveIn(t, p); h != "" {
			return h
		}
	}
	return ""
}

// resolveIn follows symlinks of p's last element within root, as the guest
// would see them; an unpacked package is not installed, so a target such as
// /usr/lib/... must be read under root, never on the host. Packages before
// and after the /usr merge put libraries in /lib or /usr/lib: either does,
// since the guest gets the file at the path its program asks for.
func resolveIn(root, p string) string {
	for range 40 {
		var full string
		for _, c := range []string{p, usrTwin(p)} {
			if c == "" {
				continue
			}
			if _, err := os.Lstat(filepath.Join(root, c)); err == nil {
				full, p = filepath.Join(root, c), c
				break
			}
		}
		if full == "" {
			return ""
		}
		st, err := os.Lstat(full)
		if err != nil {
			return ""
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			if !st.Mode().IsRegular() {
				return ""
			}
			return full
		}
		if root == "/" {
			// The host's own links are the guest's: os.Stat follows them.
			if r, err := filepath.EvalSymlinks(full); err == nil {
				return r
			}
			return ""
		}
		target, err := os.Readlink(full)
		if err != nil {
			return ""
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean(target)
	}
	return ""
}

// usrTwin maps /lib/x to /usr/lib/x and back.
func usrTwin(p string) string {
	if rest, ok := strings.CutPrefix(p, "/usr/"); ok {
		return "/" + rest
	}
	for _, d := range []string{"/lib/", "/lib64/", "/bin/", "/sbin/"} {
		if strings.HasPrefix(p, d) {
			return "/usr" + p
		}
	}
	return ""
}

// libDirs are the directories the Debian loader searches without an
// ld.so.cache, which the guest does not have.
func libDirs(a *arch) []string {
	return []string{"/lib/" + a.triplet, "/usr/lib/" + a.triplet, "/lib", "/usr/lib"}
}

// findLib returns the guest path and host file of a shared library.
func (s *sysroot) findLib(name string, a *arch) (guest, host string) {
	for _, d := range libDirs(a) {
		g := path.Join(d, name)
		if h := s.find(g); h != "" {
			return g, h
		}
	}
	return "", ""
}

// foreignUserland unpacks the guest's programs from Debian packages of its
// architecture, then the shared libraries they need: each library missing
// from what is unpacked comes from one of the Depends of the package whose
// binary needs it (dpkg-shlibdeps put the library's package there), so
// only the packages actually needed are fetched. Trees are cached per
// package under userland/<arch>/.
func foreignUserland(a *arch, c *cache) (*userland, error) {
	s := &sysroot{pkgOf: map[string]string{}}
	f := &foreignFetcher{a: a, c: c, s: s, unpacked: map[string]bool{}}
	u := &userland{root: s}
	progs := []struct {
		pkg, name string
		dst       *string
	}{
		{"busybox-static", "busybox", &u.busybox},
		{"iproute2", "ip", &u.ip},
		{"dash", "dash", &u.shell},
		{"net-tools", "route", &u.route},
		{"net-tools", "ifconfig", &u.ifconfig},
	}
	for _, p := range progs {
		tree, err := f.unpack(p.pkg)
		if err != nil {
			return nil, err
		}
		for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin"} {
			if h := resolveIn(tree, path.Join(d, p.name)); h != "" {
				*p.dst = h
				break
			}
		}
		if *p.dst == "" {
			return nil, fmt.Errorf("package %s:%s has no %s binary", p.pkg, a.name, p.name)
		}
		if err := f.libsOf(*p.dst, p.pkg); err != nil {
			return nil, err
		}
	}
	u.ipConfig = c.path("userland", a.name, "iproute2")
	return u, nil
}

type foreignFetcher struct {
	a        *arch
	c        *cache
	s        *sysroot
	unpacked map[string]bool
	visited  map[string]bool
}

// unpack makes pkg's tree part of the sysroot, unpacking it once per cache.
func (f *foreignFetcher) unpack(pkg string) (string, error) {
	tree := f.c.path("userland", f.a.name, pkg)
	if f.unpacked[pkg] {
		return tree, nil
	}
	if !fileExists(tree) {
		deb, err := fetchDeb(f.c, pkg, f.a)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
			return "", fmt.Errorf("caching %s:%s: %w", pkg, f.a.name, err)
		}
		if err := f.c.unpack(deb, tree); err != nil {
			return "", err
		}
	}
	f.unpacked[pkg] = true
	f.s.trees = append(f.s.trees, tree)
	f.s.pkgOf[tree] = pkg
	return tree, nil
}

// depends lists the first alternative of each Pre-Depends and Depends
// entry of pkg, without versions or architecture qualifiers.
func (f *foreignFetcher) depends(pkg string) ([]string, error) {
	deb, err := fetchDeb(f.c, pkg, f.a)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, field := range []string{"Pre-Depends", "Depends"} {
		out, err := runTool("", "dpkg-deb", "-f", deb, field)
		if err != nil {
			return nil, fmt.Errorf("reading %s of %s: %w", field, deb, err)
		}
		for _, e := range strings.Split(string(out), ",") {
			alt, _, _ := strings.Cut(e, "|")
			name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
			name, _, _ = strings.Cut(name, ":")
			if name = strings.TrimSpace(name); name != "" {
				deps = append(deps, name)
			}
		}
	}
	return deps, nil
}

// libsOf makes sure every library bin needs, and the libraries those need,
// is in the sysroot; pkg is the package bin came from.
func (f *foreignFetcher) libsOf(bin, pkg string) error {
	if f.visited == nil {
		f.visited = map[string]bool{}
	}
	if f.visited[bin] {
		return nil
	}
	f.visited[bin] = true
	ef, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("reading %s: %w", bin, err)
	}
	needed, err := ef.DynString(elf.DT_NEEDED)
	ef.Close()
	if err != nil {
		return nil // static
	}
	for _, lib := range needed {
		_, host := f.s.findLib(lib, f.a)
		owner := ""
		if host == "" {
			deps, err := f.depends(pkg)
			if err != nil {
				return err
			}
			for _, d := range deps {
				if f.unpacked[d] {
					continue
				}
				if _, err := f.unpack(d); err != nil {
					// A virtual package or one this architecture lacks: the
					// library is in another dependency, or the error below
					// names it.
					slog.Debug("skipping dependency", "package", d, "arch", f.a.name, "err", err)
					continue
				}
				if _, host = f.s.findLib(lib, f.a); host != "" {
					owner = d
					break
				}
			}
		}
		if host == "" {
			return fmt.Errorf("%s (%s:%s) needs %s, which none of the package's dependencies ships", bin, pkg, f.a.name, lib)
		}
		if owner == "" {
			owner = f.ownerOf(host)
		}
		if err := f.libsOf(host, owner); err != nil {
			return err
		}
	}
	return nil
}

func (f *foreignFetcher) ownerOf(host string) string {
	for tree, pkg := range f.s.pkgOf {
		if strings.HasPrefix(host, tree+"/") {
			return pkg
		}
	}
	return ""
}
