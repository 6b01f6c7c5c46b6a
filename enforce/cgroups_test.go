package enforce

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// selfCgroupPath is this process's cgroup v2 path from the hierarchy's root.
func selfCgroupPath(tb testing.TB) string {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if rel, ok := strings.CutPrefix(l, "0::"); ok {
			return rel
		}
	}
	tb.Skip("no cgroup v2 membership")
	return ""
}

func TestCgroupIDs(t *testing.T) {
	root, err := Cgroup2Mount()
	if err != nil {
		t.Skip(err)
	}
	self := selfCgroupPath(t)
	want, err := selfCgroupID()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := CgroupIDs("", []string{self}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []uint64{want}) {
		t.Fatalf("cgroup %s: ids %v, want [%d]", self, ids, want)
	}
	if self != "/" {
		// a unit glob on the last component finds the same cgroup
		ids, err = CgroupIDs(root, nil, []string{filepath.Base(self)[:1] + "*"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ids, want) && !ancestorListed(t, root, self, ids) {
			t.Fatalf("unit glob %q*: ids %v, want %d or an ancestor's", filepath.Base(self)[:1], ids, want)
		}
	}
	if _, err := CgroupIDs(root, []string{"["}, nil); err == nil {
		t.Fatal("a bad pattern was accepted")
	}
}

// ancestorListed: the walk stops at a matching cgroup, so an ancestor of
// self matching the same glob stands for it.
func ancestorListed(t *testing.T, root, self string, ids []uint64) bool {
	for d := filepath.Dir(self); d != "/" && d != "."; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(root, d), &st); err == nil && slices.Contains(ids, st.Ino) {
			return true
		}
	}
	return false
}
