package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// make vm's three runs unpack the same kernel at once on a fresh cache;
// the losers of the rename must take the winner's tree, not fail (they did:
// "rename .unpack-NNN ...: file exists").
func TestUnpackConcurrently(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skipf("needs dpkg-deb: %v", err)
	}
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	for _, d := range []string{"DEBIAN", "boot"} {
		if err := os.MkdirAll(filepath.Join(pkg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := "Package: vmtest-fake\nVersion: 1.2-3\nArchitecture: all\nMaintainer: routetrace\nDescription: test\n"
	if err := os.WriteFile(filepath.Join(pkg, "DEBIAN/control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "boot/vmlinuz"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(dir, "fake.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", pkg, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v: %s", err, out)
	}
	c := &cache{root: filepath.Join(dir, "cache")}
	dest := filepath.Join(c.root, "kernels", "fake")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	const runs = 6
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { errs[i] = c.unpack(deb, dest) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("unpack %d: %v", i, err)
		}
	}
	got, err := os.ReadFile(filepath.Join(dest, "boot/vmlinuz"))
	if err != nil || string(got) != "kernel" {
		t.Errorf("unpacked vmlinuz = %q, %v; want \"kernel\"", got, err)
	}
	if v, err := os.ReadFile(filepath.Join(dest, debVersionFile)); err != nil || string(v) != "1.2-3\n" {
		t.Errorf("version file = %q, %v; want \"1.2-3\\n\"", v, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".unpack-*"))
	if len(left) != 0 {
		t.Errorf("temporary trees left behind: %v", left)
	}
}
