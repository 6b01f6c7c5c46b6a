package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// rootfsRecipe is everything that decides the content of the debootstrap
// tree. Its hash names the cached tree, so changing any field rebuilds it and
// nothing else does. The mirror is not part of it: it says where packages
// come from, not which.
type rootfsRecipe struct {
	Suite    string   `json:"suite"`
	Variant  string   `json:"variant"`
	Include  []string `json:"include"`
	Arch     string   `json:"arch"`
	Revision int      `json:"revision"` // bump to force a rebuild
}

// networkdRecipe is systemd as PID 1 with systemd-networkd, udev for the
// links networkd waits on, dbus for networkctl, iproute2 for the scenario.
var networkdRecipe = rootfsRecipe{
	Suite:    "bookworm",
	Variant:  "minbase",
	Include:  []string{"systemd", "systemd-sysv", "udev", "dbus", "iproute2"},
	Arch:     "amd64",
	Revision: 1,
}

func (r rootfsRecipe) hash() string {
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// rootfsFile is a file the image adds on top of the debootstrap tree.
type rootfsFile struct {
	path   string // absolute, in the guest
	data   string // content, or
	target string // symlink target
	mode   fs.FileMode
}

// rootfsImage returns an ext4 image of the recipe's tree plus files,
// building the tree with debootstrap and the image with mkfs.ext4 -d only
// when no cached one matches. The image is never written to: QEMU opens it
// with snapshot=on.
func rootfsImage(c *cache, r rootfsRecipe, files []rootfsFile, secondStage func(stage string) error) (string, error) {
	tree, err := rootfsTree(c, r, secondStage)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "tree %s\n", r.hash())
	for _, f := range files {
		fmt.Fprintf(h, "%s %o %q %q\n", f.path, f.mode, f.target, f.data)
	}
	img := c.path("rootfs", fmt.Sprintf("%s-%s-%s.ext4", r.Suite, r.Arch, hex.EncodeToString(h.Sum(nil))[:16]))
	// Every change to the files makes a new image of half a gigabyte; only
	// the current one is worth keeping.
	old, _ := filepath.Glob(c.path("rootfs", fmt.Sprintf("%s-%s-*.ext4", r.Suite, r.Arch)))
	for _, o := range old {
		if o != img {
			slog.Info("removing stale root filesystem image", "path", o)
			os.Remove(o)
		}
	}
	if fileExists(img) {
		slog.Info("reusing cached root filesystem image", "path", img)
		return img, nil
	}
	if _, err := needTool("mkfs.ext4", "e2fsprogs"); err != nil {
		return "", err
	}
	// The image gets its own copy of the tree: the tree stays pristine for
	// the next image, and cp -a keeps devices, owners and hard links.
	stage, err := os.MkdirTemp(c.path("rootfs"), ".image-")
	if err != nil {
		return "", fmt.Errorf("staging root filesystem: %w", err)
	}
	defer os.RemoveAll(stage)
	root := filepath.Join(stage, "root")
	if _, err := runTool("", "cp", "-a", tree, root); err != nil {
		return "", fmt.Errorf("staging root filesystem: %w", err)
	}
	for _, f := range files {
		if err := f.write(root); err != nil {
			return "", err
		}
	}
	size, err := dirSize(root)
	if err != nil {
		return "", fmt.Errorf("sizing root filesystem: %w", err)
	}
	// Room for the journal, the scenario's logs and ext4's own metadata.
	mib := size/(1<<20)*5/4 + 256
	tmp := filepath.Join(stage, "image.ext4")
	slog.Info("building root filesystem image", "path", img, "size_mib", mib)
	if _, err := runTool("", "mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d", root, tmp, fmt.Sprintf("%dM", mib)); err != nil {
		return "", fmt.Errorf("building root filesystem image: %w", err)
	}
	return img, os.Rename(tmp, img)
}

func (f rootfsFile) write(root string) error {
	dst := filepath.Join(root, f.path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("adding %s to root filesystem: %w", f.path, err)
	}
	os.Remove(dst)
	if f.target != "" {
		if err := os.Symlink(f.target, dst); err != nil {
			return fmt.Errorf("adding %s to root filesystem: %w", f.path, err)
		}
		return nil
	}
	if err := os.WriteFile(dst, []byte(f.data), f.mode); err != nil {
		return fmt.Errorf("adding %s to root filesystem: %w", f.path, err)
	}
	return nil
}

// rootfsTree runs debootstrap unless the cache has the recipe's tree. It
// builds beside the final name and renames, so an interrupted build is never
// mistaken for a finished one. With secondStage set (a foreign
// architecture, whose programs the host cannot run) debootstrap only
// unpacks (--foreign) and secondStage configures the tree.
func rootfsTree(c *cache, r rootfsRecipe, secondStage func(stage string) error) (string, error) {
	tree := c.path("rootfs", fmt.Sprintf("%s-%s-%s-%s", r.Suite, r.Variant, r.Arch, r.hash()))
	if fileExists(tree) {
		return tree, nil
	}
	if _, err := needTool("debootstrap", "debootstrap"); err != nil {
		return "", err
	}
	mirror, err := hostMirror(r.Suite)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.path("rootfs"), 0o755); err != nil {
		return "", fmt.Errorf("creating rootfs cache: %w", err)
	}
	stage, err := os.MkdirTemp(c.path("rootfs"), ".debootstrap-")
	if err != nil {
		return "", fmt.Errorf("creating rootfs cache: %w", err)
	}
	defer os.RemoveAll(stage)
	logPath := tree + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Errorf("creating debootstrap log: %w", err)
	}
	defer logf.Close()
	args := []string{"--variant=" + r.Variant, "--arch=" + r.Arch, "--include=" + strings.Join(r.Include, ",")}
	if secondStage != nil {
		args = append(args, "--foreign")
	}
	args = append(args, r.Suite, stage, mirror)
	slog.Info("building root filesystem with debootstrap (minutes)", "suite", r.Suite, "mirror", mirror, "log", logPath)
	start := time.Now()
	cmd := exec.Command("debootstrap", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debootstrap %s: %w (log: %s)", strings.Join(args, " "), err, logPath)
	}
	if secondStage != nil {
		slog.Info("debootstrap second stage in a guest (minutes under TCG)", "arch", r.Arch)
		if err := secondStage(stage); err != nil {
			return "", fmt.Errorf("debootstrap second stage for %s: %w", r.Arch, err)
		}
	}
	// Downloaded packages are a third of the tree and never used again.
	debs, _ := filepath.Glob(filepath.Join(stage, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	if err := os.Rename(stage, tree); err != nil {
		return "", fmt.Errorf("caching debootstrap tree: %w", err)
	}
	slog.Info("root filesystem built", "path", tree, "took", time.Since(start).Round(time.Second))
	return tree, nil
}

// hostMirror reads the Debian mirror this machine's apt uses, from the
// deb822 sources file (or the one-line format as a fallback), so the guest
// comes from the same place as everything else the host installs.
func hostMirror(suite string) (string, error) {
	if f, err := os.Open("/etc/apt/sources.list.d/debian.sources"); err == nil {
		defer f.Close()
		var uris, suites string
		sc := bufio.NewScanner(f)
		check := func() string {
			for _, s := range strings.Fields(suites) {
				if s == suite && uris != "" {
					return strings.Fields(uris)[0]
				}
			}
			return ""
		}
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				if m := check(); m != "" {
					return m, nil
				}
				uris, suites = "", ""
				continue
			}
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				uris = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "Suites:"); ok {
				suites = strings.TrimSpace(v)
			}
		}
		if m := check(); m != "" {
			return m, nil
		}
	}
	if raw, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "deb" && f[2] == suite {
				return f[1], nil
			}
		}
	}
	return "", fmt.Errorf("no apt source for %s in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list", suite)
}

func dirSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// sortedFiles orders files by path so the image hash does not depend on
// the order they were declared in.
func sortedFiles(files []rootfsFile) []rootfsFile {
	out := append([]rootfsFile(nil), files...)
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}
