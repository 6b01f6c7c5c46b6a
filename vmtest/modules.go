package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// module is a kernel module ready for insmod: decompressed, because busybox
// insmod passes the file to init_module as is and cannot inflate it.
type module struct {
	name string
	path string // decompressed .ko in the cache
}

// resolveModules returns the modules to load, dependencies first. Debian's
// kernel packages ship no modules.dep (depmod runs at install time), so the
// dependencies come from each module's own .modinfo "depends=" field.
// Modules built into the kernel, or absent from it, are left out: tests
// then see the real kernel and skip or fail with their own reason.
func resolveModules(k *kernel, c *cache, names []string) ([]module, error) {
	files := map[string]string{}
	root := filepath.Join(k.modulesDir(), "kernel")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := moduleName(d.Name()); ok && !d.IsDir() {
			files[name] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules of %s: %w", k.release, err)
	}
	builtin := map[string]bool{}
	if raw, err := os.ReadFile(filepath.Join(k.modulesDir(), "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(raw)) {
			if name, ok := moduleName(filepath.Base(line)); ok {
				builtin[name] = true
			}
		}
	}

	var order []module
	seen := map[string]bool{}
	var visit func(name string, wanted bool) error
	visit = func(name string, wanted bool) error {
		name = normalizeModule(name)
		if seen[name] {
			return nil
		}
		seen[name] = true
		if builtin[name] {
			slog.Debug("module is built in", "kernel", k.release, "module", name)
			return nil
		}
		src, ok := files[name]
		if !ok {
			if wanted {
				slog.Warn("module not in kernel package, not loading it", "kernel", k.release, "module", name)
				return nil
			}
			return fmt.Errorf("module dependency %s missing from %s", name, k.pkg)
		}
		ko, err := decompressModule(src, c.path("modules", k.pkg, name+".ko"))
		if err != nil {
			return err
		}
		deps, err := moduleDepends(ko)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, false); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		order = append(order, module{name: name, path: ko})
		return nil
	}
	for _, n := range names {
		if err := visit(n, true); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleName maps veth.ko, veth.ko.xz, nf-tables.ko.zst to the kernel's
// module name, which uses underscores.
func moduleName(file string) (string, bool) {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if base, ok := strings.CutSuffix(file, ext); ok {
			return normalizeModule(base), true
		}
	}
	return "", false
}

func normalizeModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

func decompressModule(src, dst string) (string, error) {
	if fileExists(dst) {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("decompressing %s: %w", src, err)
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("decompressing module: %w", err)
	}
	defer in.Close()
	var r io.Reader = in
	switch filepath.Ext(src) {
	case ".xz", ".zst":
		// No xz or zstd in the standard library, and the tools are one
		// apt-get away on any Debian host.
		tool, pkg := "xz", "xz-utils"
		if filepath.Ext(src) == ".zst" {
			tool, pkg = "zstd", "zstd"
		}
		if _, err := needTool(tool, pkg); err != nil {
			return "", err
		}
		cmd := exec.Command(tool, "-dc")
		cmd.Stdin = in
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("decompressing %s with %s: %w", src, tool, err)
		}
		r = bytes.NewReader(out)
	case ".gz":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return "", fmt.Errorf("decompressing %s: %w", src, err)
		}
		r = zr
	}
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("decompressing module: %w", err)
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return "", fmt.Errorf("decompressing %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("decompressing %s: %w", src, err)
	}
	return dst, os.Rename(tmp, dst)
}

// moduleDepends reads the comma-separated depends= entry of .modinfo.
func moduleDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", ko)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %s: %w", ko, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
