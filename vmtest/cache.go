package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// debVersionFile is written into every unpacked tree so later runs know the
// package version without keeping or re-reading the .deb.
const debVersionFile = ".routetrace-deb-version"

// cache is ~/.cache/routetrace/vmtest: kernel packages are tens of MB each
// and the repository must stay free of them.
type cache struct{ root string }

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
	return c, nil
}

func (c *cache) path(elem ...string) string {
	return filepath.Join(append([]string{c.root}, elem...)...)
}

// download fetches a .deb with apt-get into the cache, reusing an earlier
// download. apt-get download names the file <pkg>_<version>_<arch>.deb.
func (c *cache) download(aptName, pkg string) (string, error) {
	dir := c.path("debs")
	if deb := findDeb(dir, pkg); deb != "" {
		return deb, nil
	}
	if _, err := needTool("apt-get", "apt"); err != nil {
		return "", err
	}
	slog.Info("downloading package", "package", aptName)
	if _, err := runTool(dir, "apt-get", "download", aptName); err != nil {
		return "", fmt.Errorf("downloading %s: %w", aptName, err)
	}
	deb := findDeb(dir, pkg)
	if deb == "" {
		return "", fmt.Errorf("downloading %s: apt-get left no %s_*.deb in %s", aptName, pkg, dir)
	}
	return deb, nil
}

func findDeb(dir, pkg string) string {
	matches, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	for _, m := range matches {
		// Partial downloads from an interrupted apt-get stay in partial/,
		// so anything here is complete.
		if !strings.HasSuffix(m, ".partial") {
			return m
		}
	}
	return ""
}

// unpack extracts a .deb into dest atomically.
func (c *cache) unpack(deb, dest string) error {
	if _, err := needTool("dpkg-deb", "dpkg"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-")
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", deb, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := runTool("", "dpkg-deb", "-x", deb, tmp); err != nil {
		return fmt.Errorf("unpacking %s: %w", deb, err)
	}
	version, err := runTool("", "dpkg-deb", "-f", deb, "Version")
	if err != nil {
		return fmt.Errorf("reading version of %s: %w", deb, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, debVersionFile), version, 0o644); err != nil {
		return fmt.Errorf("unpacking %s: %w", deb, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
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
