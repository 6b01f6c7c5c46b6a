package main

import (
	"bytes"
	"strconv"
	"testing"
)

// TestNewc reads the archive back field by field, as the kernel would.
func TestNewc(t *testing.T) {
	im := image{}
	im.chardev("dev/console", 5, 1)
	im.data("vmtest/config.sh", []byte("set --\n"), 0o644)
	im.symlink("bin/sh", "busybox")
	var buf bytes.Buffer
	if err := im.write(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	type ent struct {
		mode uint64
		body string
	}
	got := map[string]ent{}
	var order []string
	for off := 0; ; {
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		off = align4(off + 110 + namesize)
		body := string(b[off : off+size])
		off = align4(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after trailer", len(b)-off)
			}
			break
		}
		got[name] = ent{mode, body}
		order = append(order, name)
	}
	if got["dev/console"].mode != 0o020600 {
		t.Errorf("console mode %o", got["dev/console"].mode)
	}
	if e := got["bin/sh"]; e.mode != 0o120777 || e.body != "busybox" {
		t.Errorf("symlink = %+v", e)
	}
	if e := got["vmtest/config.sh"]; e.mode != 0o100644 || e.body != "set --\n" {
		t.Errorf("file = %+v", e)
	}
	seen := map[string]bool{}
	for _, n := range order {
		if d := parentDir(n); d != "" && !seen[d] {
			t.Errorf("%s comes before its directory %s", n, d)
		}
		seen[n] = true
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

func parentDir(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return ""
}
