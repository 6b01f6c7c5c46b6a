package main

import (
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

//go:embed init.sh
var initScript []byte

// userland is the guest's handful of programs: busybox for mounts, awk and
// the like; iproute2's ip because busybox's ip applet has no netns; dash as
// /bin/sh because Debian's busybox ash runs its own applets before searching
// PATH, so `sh -c "ip ..."` in a test would get busybox's ip; net-tools'
// route and ifconfig, which the tests run as the ioctl-based tools users
// still have (busybox's applets would be other programs by the same name).
type userland struct {
	busybox  string
	ip       string
	shell    string
	route    string
	ifconfig string
	ipConfig string   // a tree holding etc/iproute2 and usr/share/iproute2
	root     *sysroot // where the programs' shared libraries are found
}

// findUserland takes the programs from the host when the guest runs the
// host's architecture, and from Debian packages of the guest architecture
// otherwise (foreignUserland).
func findUserland(a *arch, c *cache) (*userland, error) {
	if !a.native() {
		return foreignUserland(a, c)
	}
	bb, err := needTool("busybox", "busybox-static")
	if err != nil {
		return nil, err
	}
	u := &userland{busybox: bb, ipConfig: "/", root: hostSysroot()}
	for _, p := range []struct {
		dst       *string
		pkg       string
		locations []string
	}{
		{&u.ip, "iproute2", []string{"/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"}},
		{&u.shell, "dash", []string{"/usr/bin/dash", "/bin/dash"}},
		{&u.route, "net-tools", []string{"/usr/sbin/route", "/sbin/route"}},
		{&u.ifconfig, "net-tools", []string{"/usr/sbin/ifconfig", "/sbin/ifconfig"}},
	} {
		if *p.dst = firstExisting(p.locations...); *p.dst == "" {
			return nil, fmt.Errorf("%s not found: install it with `apt-get install %s`", filepath.Base(p.locations[0]), p.pkg)
		}
	}
	return u, nil
}

func firstExisting(paths ...string) string {
	for _, p := range paths {
		if fileExists(p) {
			return p
		}
	}
	return ""
}

// baseImage builds, or reuses from the cache, the part of the initramfs that
// depends only on the kernel and the host: busybox, ip with its libraries,
// and modules. Test binaries change every run and go in a second archive.
func baseImage(k *kernel, a *arch, u *userland, c *cache, moduleNames []string) (string, error) {
	im := image{}
	im.chardev("dev/console", 5, 1) // PID 1 gets its stdio from here before devtmpfs is mounted
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "root", "etc", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "vmtest/bin"} {
		im.dir(d)
	}
	for _, p := range []struct{ dst, src string }{
		{"bin/busybox", u.busybox}, {"bin/sh", u.shell}, {"usr/sbin/ip", u.ip},
		{"usr/sbin/route", u.route}, {"usr/sbin/ifconfig", u.ifconfig},
	} {
		if err := addELF(im, p.dst, p.src, a, u.root); err != nil {
			return "", err
		}
	}
	// ip reads table and protocol names from here; without them it prints
	// numbers, which tests comparing against `ip route` output would trip on.
	// Newer iproute2 keeps the defaults in /usr/share and overrides in /etc.
	for _, dir := range []string{"etc/iproute2", "usr/share/iproute2"} {
		root := filepath.Join(u.ipConfig, dir)
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(u.ipConfig, p)
				im.file(rel, p, 0o644)
			}
			return nil
		})
	}
	im.data("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	im.data("etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	im.data("etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644)

	mods, err := resolveModules(k, c, moduleNames)
	if err != nil {
		return "", err
	}
	var order strings.Builder
	for _, m := range mods {
		dst := path.Join("lib/modules", k.release, m.name+".ko")
		im.file(dst, m.path, 0o644)
		fmt.Fprintf(&order, "/%s\n", dst)
	}
	im.data("vmtest/modules", []byte(order.String()), 0o644)

	fp, err := im.fingerprint()
	if err != nil {
		return "", err
	}
	dst := c.path("initramfs", fmt.Sprintf("%s-%s-%s.cpio", k.release, a.name, fp[:16]))
	if fileExists(dst) {
		slog.Info("reusing cached initramfs", "kernel", k.release, "path", dst)
		return dst, nil
	}
	slog.Info("building initramfs", "kernel", k.release, "modules", moduleList(mods), "path", dst)
	return dst, im.writeFile(dst)
}

func moduleList(mods []module) string {
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = m.name
	}
	return strings.Join(names, ",")
}

// runSpec is what the guest does once booted.
type runSpec struct {
	binaries []string // host paths of test binaries
	tiers    []string // ROUTETRACE_ATTACH values; "auto" leaves it unset
	// independentOn: where this kernel's tier-independent tests run
	// instead (kernels.txt's independent=); "" runs them here.
	independentOn string
	testArgs      []string          // appended to every test binary's arguments, or routetrace bench's
	bench         bool              // run routetrace bench per tier instead of test binaries
	expect        []string          // tiers the kernel must give (ROUTETRACE_VMTEST)
	narrowed      bool              // --expect-tiers given: expect narrows every kernel's tiers
	env           []string          // K=V exported for the tests
	extra         map[string]string // guest path -> host path
	arch          *arch
	root          *sysroot // libraries of dynamic extra files
}

// onceTier is the tier under which a boot runs the tier-independent tests
// (internal/tiertest.TierIndependent): tracepoint where it runs, because
// tier 3's tracer starts and stops in a third of the time of the FIB
// hooks' under TCG, else the last tier. "" when a boot runs one tier (or
// auto): then every test runs.
func onceTier(tiers []string) string {
	if len(tiers) < 2 {
		return ""
	}
	if slices.Contains(tiers, "tracepoint") {
		return "tracepoint"
	}
	return tiers[len(tiers)-1]
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// overlayImage holds the per-run part: init, its configuration, test
// binaries and extra files. The kernel unpacks concatenated archives in
// order, so these land on top of the base image.
func overlayImage(spec *runSpec, dst string) error {
	im := image{}
	im.data("init", initScript, 0o755)

	seen := map[string]string{}
	for _, b := range spec.binaries {
		name := filepath.Base(b)
		if prev, ok := seen[name]; ok {
			return fmt.Errorf("test binaries %s and %s share the name %s; rename one with go test -c -o", prev, b, name)
		}
		seen[name] = b
		if err := addELF(im, "vmtest/bin/"+name, b, spec.arch, spec.root); err != nil {
			return err
		}
	}
	cfg, err := guestConfig(spec)
	if err != nil {
		return err
	}
	im.data("vmtest/config.sh", cfg, 0o644)

	guests := make([]string, 0, len(spec.extra))
	for g := range spec.extra {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	for _, g := range guests {
		if err := addELF(im, g, spec.extra[g], spec.arch, spec.root); err != nil {
			return err
		}
	}
	return im.writeFile(dst)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// addELF adds a host file and, if it is a dynamic ELF, its interpreter and
// shared libraries, taken from root at the paths the guest's loader looks
// for them. Libraries are found by walking DT_NEEDED rather than with ldd,
// because ldd executes the binary's loader and so cannot inspect a
// foreign-architecture binary.
func addELF(im image, dst, src string, a *arch, root *sysroot) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("adding %s to initramfs: %w", src, err)
	}
	im.file(dst, src, st.Mode().Perm())
	f, err := elf.Open(src)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) {
			return nil // scripts and data files need nothing else
		}
		return fmt.Errorf("reading %s: %w", src, err)
	}
	defer f.Close()
	if f.Machine != a.elfMachine && (a.compatMachine == 0 || f.Machine != a.compatMachine) {
		return fmt.Errorf("%s is built for %s, but the %s guest runs %s: build it with GOARCH=%s (a {arch} in the path is replaced by the guest's)", src, f.Machine, a.name, a.elfMachine, a.name)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		raw, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("reading interpreter of %s: %w", src, err)
		}
		interp := strings.TrimRight(string(raw), "\x00")
		host := root.find(interp)
		if host == "" {
			return fmt.Errorf("%s needs %s, which is missing: install libc6:%s", src, interp, a.name)
		}
		im.file(interp, host, 0o755)
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil // no dynamic section: static binary
	}
	for _, lib := range needed {
		guest, host := root.findLib(lib, a)
		if host == "" {
			return fmt.Errorf("%s needs %s, not found in the %s library directories: install the package that ships it (for %s)", src, lib, a.triplet, a.name)
		}
		if _, done := im[clean(guest)]; done {
			continue
		}
		if err := addELF(im, guest, host, a, root); err != nil {
			return err
		}
	}
	return nil
}

// guestConfig is vmtest/config.sh, which init sources: the tiers to run,
// the binaries, their arguments and environment.
func guestConfig(spec *runSpec) ([]byte, error) {
	var cfg strings.Builder
	cfg.WriteString("# Generated by the vmtest harness for this run.\n")
	fmt.Fprintf(&cfg, "VMTEST_TIERS=%s\n", shellQuote(strings.Join(spec.tiers, " ")))
	if spec.independentOn != "" {
		fmt.Fprintf(&cfg, "export ROUTETRACE_VMTEST_INDEPENDENT_ON=%s\n", shellQuote(spec.independentOn))
	} else if once := onceTier(spec.tiers); once != "" {
		fmt.Fprintf(&cfg, "export ROUTETRACE_VMTEST_ONCE_TIER=%s\n", shellQuote(once))
	}
	var names []string
	for _, b := range spec.binaries {
		names = append(names, filepath.Base(b))
	}
	fmt.Fprintf(&cfg, "VMTEST_BINARIES=%s\n", shellQuote(strings.Join(names, " ")))
	if spec.bench {
		cfg.WriteString("VMTEST_BENCH=1\n")
	}
	cfg.WriteString("set --")
	for _, a := range spec.testArgs {
		cfg.WriteString(" " + shellQuote(a))
	}
	cfg.WriteString("\n")
	// Tests use this to turn "cannot run here" skips into failures: in the
	// VM everything they need is present, and a forced tier named here that
	// the kernel refuses fails its test (internal/tiertest). Never empty,
	// so that it also says "in a vmtest guest".
	expect := strings.Join(spec.expect, ",")
	if expect == "" {
		expect = "none"
	}
	fmt.Fprintf(&cfg, "export ROUTETRACE_VMTEST=%s\n", shellQuote(expect))
	for _, kv := range spec.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envKeyRE.MatchString(k) {
			return nil, fmt.Errorf("--env %q: want NAME=VALUE", kv)
		}
		fmt.Fprintf(&cfg, "export %s=%s\n", k, shellQuote(v))
	}
	return []byte(cfg.String()), nil
}

// configImage holds only vmtest/config.sh. Appended after the overlay it
// replaces the run's configuration with one kernel's (its tiers from the
// kernel list), so the test binaries are packed once per run.
func configImage(spec *runSpec, dst string) error {
	cfg, err := guestConfig(spec)
	if err != nil {
		return err
	}
	im := image{}
	im.data("vmtest/config.sh", cfg, 0o644)
	return im.writeFile(dst)
}
