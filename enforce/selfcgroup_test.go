package enforce

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/nodefacts"
)

// selfCgroupID is this process's cgroup v2 id: the inode of its directory
// in the unified hierarchy.
func selfCgroupID() (uint64, error) {
	root, err := nodefacts.Cgroup2Mount()
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
