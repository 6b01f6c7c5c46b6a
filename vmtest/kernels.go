package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// kernel is one bootable Debian kernel, unpacked in the cache.
type kernel struct {
	pkg     string // Debian package, e.g. linux-image-6.1.0-56-cloud-amd64-unsigned
	version string // upstream version, e.g. 6.1.192
	release string // uname -r, e.g. 6.1.0-56-cloud-amd64
	tree    string // dpkg -x of the package
	image   string // bootable kernel image inside tree
}

func (k *kernel) modulesDir() string { return filepath.Join(k.tree, "lib/modules", k.release) }

// readKernelList returns the non-comment lines of the kernel list.
func readKernelList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading kernel list: %w", err)
	}
	defer f.Close()
	var entries []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			entries = append(entries, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kernel list %s: %w", path, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("kernel list %s names no kernels", path)
	}
	return entries, nil
}

var seriesRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// resolveKernel turns a list entry into a package name. A series resolves to
// the newest matching package apt knows, so the list does not go stale with
// every Debian point release; a pinned package name is used as is.
func resolveKernel(entry string, a *arch, c *cache) (string, error) {
	if !seriesRE.MatchString(entry) {
		if !strings.HasPrefix(entry, "linux-image-") {
			return "", fmt.Errorf("kernel %q: want a series like 6.1 or a linux-image-* package name", entry)
		}
		return entry, nil
	}
	// 6.1 packages look like linux-image-6.1.0-56-cloud-amd64-unsigned and
	// 6.12 ones like linux-image-6.12.117+deb12-cloud-amd64-unsigned; the
	// "\.[0-9]+[-+]" keeps "6.1" from matching 6.12.
	pattern := "^linux-image-" + regexp.QuoteMeta(entry) + `\.[0-9]+[-+].*` + regexp.QuoteMeta(a.kernelPackageSuffix()) + "$"
	var names []string
	if _, err := needTool("apt-cache", "apt"); err == nil {
		out, err := runTool("", "apt-cache", "search", "--names-only", pattern)
		if err != nil {
			slog.Warn("apt-cache search failed, falling back to cached kernels", "series", entry, "err", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if name, _, ok := strings.Cut(line, " "); ok {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		// Offline: whatever an earlier run unpacked still boots.
		re := regexp.MustCompile(pattern)
		dirs, _ := os.ReadDir(c.path("kernels"))
		for _, d := range dirs {
			if re.MatchString(d.Name()) {
				names = append(names, d.Name())
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no package matches kernel series %s (%s); run apt-get update or pin a package name", entry, pattern)
	}
	best := names[0]
	for _, n := range names[1:] {
		if naturalLess(best, n) {
			best = n
		}
	}
	return best, nil
}

// naturalLess compares digit runs by value, so -56 sorts after -9 and
// 6.12.117 after 6.12.99.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, ra := splitDigits(a)
			nb, rb := splitDigits(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// fetchKernel downloads and unpacks a kernel package unless an earlier run
// already did. The tree is unpacked beside its final name and renamed, so an
// interrupted run never leaves a half tree that later runs would trust.
func fetchKernel(pkg string, a *arch, c *cache) (*kernel, error) {
	tree := c.path("kernels", pkg)
	if _, err := os.Stat(tree); errors.Is(err, os.ErrNotExist) {
		deb, err := c.download(a.aptName(pkg), pkg)
		if err != nil {
			return nil, err
		}
		slog.Info("unpacking kernel", "package", pkg)
		if err := c.unpack(deb, tree); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("checking cached kernel: %w", err)
	}
	k := &kernel{pkg: pkg, tree: tree}
	raw, err := os.ReadFile(filepath.Join(tree, debVersionFile))
	if err != nil {
		return nil, fmt.Errorf("reading version of %s: %w", pkg, err)
	}
	// "6.1.192-2" and "6.12.117-1~deb12u1" both start with the upstream version.
	k.version, _, _ = strings.Cut(strings.TrimSpace(string(raw)), "-")

	mods, _ := filepath.Glob(filepath.Join(tree, "lib/modules/*"))
	if len(mods) != 1 {
		return nil, fmt.Errorf("kernel %s: want one lib/modules directory, found %d", pkg, len(mods))
	}
	k.release = filepath.Base(mods[0])
	for _, name := range []string{"vmlinuz-" + k.release, "Image-" + k.release, "Image"} {
		if p := filepath.Join(tree, "boot", name); fileExists(p) {
			k.image = p
			break
		}
	}
	if k.image == "" {
		return nil, fmt.Errorf("kernel %s: no vmlinuz or Image under boot/", pkg)
	}
	return k, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
