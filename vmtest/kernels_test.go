package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestNaturalLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"linux-image-6.1.0-9-cloud", "linux-image-6.1.0-56-cloud", true},
		{"linux-image-6.12.117+deb12", "linux-image-6.12.99+deb12", false},
		{"linux-image-6.12.99+deb12", "linux-image-6.12.117+deb12", true},
		{"a", "a", false},
	} {
		if got := naturalLess(tc.a, tc.b); got != tc.want {
			t.Errorf("naturalLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestReadKernelList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kernels.txt")
	os.WriteFile(p, []byte("# comment\n6.1  # bookworm\n\nlinux-image-6.12.117+deb12-cloud-amd64-unsigned\n"), 0o644)
	got, err := readKernelList(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"6.1", "linux-image-6.12.117+deb12-cloud-amd64-unsigned"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSplitArgs(t *testing.T) {
	got, err := splitArgs(`-test.run 'TestA|TestB' -x "a b" c\ d`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-test.run", "TestA|TestB", "-x", "a b", "c d"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := splitArgs(`'open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}
