package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// debVersionFile is written into every unpacked tree so later runs know the
// package version without keeping or re-reading the .deb.
const debVersionFile = ".routetrace-deb-version"

// cache is ~/.cache/routetrace/vmtest: kernel packages are tens of MB each
// and the repository must stay free of them.
type cache struct {
	root string
	apt  *apt // every download goes through it
}

func openCache() (*cache, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("finding cache directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	c := &cache{root: filepath.Join(base, "routetrace", "vmtest")}
	for _, d := range []string{"debs", "kernels", "initramfs", "runs"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("creating cache directory: %w", err)
		}
	}
	var err error
	if c.apt, err = openApt(c); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *cache) path(elem ...string) string {
	return filepath.Join(append([]string{c.root}, elem...)...)
}

// download fetches a .deb through vmtest's own apt (apt.go). aptName is
// pkg, or pkg:arch for a foreign architecture.
func (c *cache) download(aptName, pkg string) (string, error) {
	arch := runtime.GOARCH
	if _, a, ok := strings.Cut(aptName, ":"); ok {
		arch = a
	}
	return c.apt.download(pkg, arch)
}

// unpack extracts a .deb into dest atomically.
func (c *cache) unpack(deb, dest string) error { return c.unpackAll([]string{deb}, dest) }

// unpackAll extracts debs into one tree atomically; the version recorded is
// the first one's.
func (c *cache) unpackAll(debs []string, dest string) error {
	deb := debs[0]
	if _, err := needTool("dpkg-deb", "dpkg"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-")
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", deb, err)
	}
	defer os.RemoveAll(tmp)
	for _, d := range debs {
		if _, err := runTool("", "dpkg-deb", "-x", d, tmp); err != nil {
			return fmt.Errorf("unpacking %s: %w", d, err)
		}
	}
	version, err := runTool("", "dpkg-deb", "-f", deb, "Version")
	if err != nil {
		return fmt.Errorf("reading version of %s: %w", deb, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, debVersionFile), version, 0o644); err != nil {
		return fmt.Errorf("unpacking %s: %w", deb, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		// make vm starts three vmtest runs at once, and on a fresh cache
		// they unpack the same kernel side by side: the first rename wins
		// and the others find its tree, from the same .deb.
		if _, statErr := os.Stat(filepath.Join(dest, debVersionFile)); statErr == nil {
			return nil
		}
		return fmt.Errorf("unpacking %s: %w", deb, err)
	}
	return nil
}

// keepRuns bounds the console logs kept under runs/. Logs are small, but a
// harness run in a loop would otherwise grow the cache forever.
const keepRuns = 30

// pruneRuns deletes all but the newest keep run directories. Their names
// start with a timestamp, so name order is age order.
func (c *cache) pruneRuns(keep int) {
	dirs, err := os.ReadDir(c.path("runs"))
	if err != nil {
		return
	}
	names := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if d.IsDir() {
			names = append(names, d.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		if err := os.RemoveAll(c.path("runs", names[0])); err != nil {
			slog.Warn("pruning old run logs", "err", err)
		}
		names = names[1:]
	}
}
