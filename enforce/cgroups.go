package enforce

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Cgroup2Mount finds the cgroup v2 mount point in /proc/self/mountinfo.
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding the cgroup2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading /proc/self/mountinfo: %w", err)
	}
	return "", errors.New("no cgroup2 filesystem mounted")
}

// CgroupIDs walks the cgroup v2 hierarchy under root (a mount point; ""
// finds it) and returns the ids of the cgroups matching any pattern:
// "cgroup" patterns are path.Match globs on the path from the hierarchy's
// root ("/kubepods.slice/*"), "unit" patterns globs on a cgroup's last
// component that name a systemd unit ("calico-node.service"). A cgroup's
// id is its directory's inode number, what the kernel's cgroup id is. The
// enforcer allows an actor in a matching cgroup or below one, so
// descendants are not listed.
func CgroupIDs(root string, cgroupGlobs, unitGlobs []string) ([]uint64, error) {
	if root == "" {
		var err error
		if root, err = Cgroup2Mount(); err != nil {
			return nil, err
		}
	}
	for _, g := range append(append([]string(nil), cgroupGlobs...), unitGlobs...) {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("cgroup pattern %q: %w", g, err)
		}
	}
	var ids []uint64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if !cgroupMatches(rel, cgroupGlobs, unitGlobs) {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fs.SkipDir
			}
			return fmt.Errorf("stat %s: %w", p, err)
		}
		ids = append(ids, st.Ino)
		return fs.SkipDir
	})
	if err != nil {
		return nil, fmt.Errorf("walking %s: %w", root, err)
	}
	return ids, nil
}

func cgroupMatches(rel string, cgroupGlobs, unitGlobs []string) bool {
	for _, g := range cgroupGlobs {
		if ok, _ := path.Match(g, rel); ok {
			return true
		}
	}
	base := path.Base(rel)
	for _, g := range unitGlobs {
		if ok, _ := path.Match(g, base); ok {
			return true
		}
	}
	return false
}

// selfCgroupID is this process's cgroup v2 id.
func selfCgroupID() (uint64, error) {
	root, err := Cgroup2Mount()
	if err != nil {
		return 0, err
	}
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if rel, ok := strings.CutPrefix(l, "0::"); ok {
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(root, rel), &st); err != nil {
				return 0, err
			}
			return st.Ino, nil
		}
	}
	return 0, errors.New("no cgroup v2 line in /proc/self/cgroup")
}
