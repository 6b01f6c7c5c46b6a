package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// kernel is one bootable Debian kernel, unpacked in the cache.
type kernel struct {
	pkg     string // Debian package, e.g. linux-image-6.1.0-56-cloud-amd64-unsigned
	version string // upstream version, e.g. 6.1.192
	release string // uname -r, e.g. 6.1.0-56-cloud-amd64
	tree    string // dpkg -x of the package (and of its parts, when split)
	modules string // <tree>/lib/modules/<release> or <tree>/usr/lib/modules/<release>
	image   string // bootable kernel image inside tree
}

func (k *kernel) modulesDir() string { return k.modules }

// kernelEntry is one line of vmtest/kernels.txt:
//
//	<series> <arch> <exact package> [tiers=a,b] [independent=<series>/<arch>]  # the Debian release; why a tier is missing
//
// The package is pinned so that a run says exactly which build it tested
// and a Debian point release cannot change the results unseen; the series
// lets --kernel 6.1 select the line, and tiers= says what the kernel can
// give, so a tier it lacks is "not offered" rather than a failure.
// independent= sends the tier-independent tests (the CLI's flags, history,
// enforcement, repair: user space over netlink) to the same series built for
// another architecture: under arm64 TCG they would cost a quarter of an
// hour to test what the amd64 boot of that kernel already tests.
type kernelEntry struct {
	series string   // e.g. 6.1
	arch   string   // Debian architecture, e.g. amd64
	pkg    string   // exact package; "" for an unlisted --kernel series, which apt resolves
	tiers  []string // tiers it offers, in allTiers order; all unless its line says otherwise
	// independentOn: "<series>/<arch>" of the entry that runs this one's
	// tier-independent tests (independent=), the same kernel series built
	// for another architecture; "" runs them here.
	independentOn string
	note          string // the line's comment
	where         string // file:line, for errors
}

func (e kernelEntry) offers(tier string) bool {
	return tier == "auto" || slices.Contains(e.tiers, tier)
}

// label names the entry in logs and in a summary row whose kernel never
// booted.
func (e kernelEntry) label() string {
	if e.pkg != "" {
		return e.pkg
	}
	return e.series + " " + e.arch
}

// readKernelList parses the kernel list; every error names file:line.
func readKernelList(path string) ([]kernelEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading kernel list: %w", err)
	}
	defer f.Close()
	var entries []kernelEntry
	seen := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, note, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(line) == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n)
		e, err := parseKernelLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		e.note, e.where = strings.TrimSpace(note), where
		key := e.series + " " + e.arch
		if prev, ok := seen[key]; ok {
			return nil, fmt.Errorf("%s: series %s for %s is already listed at %s: --kernel %s must select one kernel", where, e.series, e.arch, prev, e.series)
		}
		seen[key] = where
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kernel list %s: %w", path, err)
	}
	for _, e := range entries {
		if e.independentOn == "" {
			continue
		}
		series, arch, _ := strings.Cut(e.independentOn, "/")
		if _, ok := seen[series+" "+arch]; !ok {
			return nil, fmt.Errorf("%s: independent=%s: no %s kernel of series %s is listed to run them", e.where, e.independentOn, arch, series)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("kernel list %s names no kernels", path)
	}
	return entries, nil
}

const kernelLineForm = "want <series> <arch> <linux-image-* package> [tiers=fentry,kprobe,tracepoint] [independent=<series>/<arch>]"

func parseKernelLine(line string) (kernelEntry, error) {
	fs := strings.Fields(line)
	if len(fs) < 3 {
		return kernelEntry{}, fmt.Errorf("%q: %s", strings.TrimSpace(line), kernelLineForm)
	}
	e := kernelEntry{series: fs[0], arch: fs[1], pkg: fs[2], tiers: allTiers}
	if !seriesRE.MatchString(e.series) {
		return e, fmt.Errorf("series %q: want major.minor such as 6.1", e.series)
	}
	if _, err := lookupArch(e.arch); err != nil {
		return e, err
	}
	// "6.1" must not accept a 6.12 package: the series ends at [.-+].
	if !strings.HasPrefix(e.pkg, "linux-image-"+e.series+".") {
		return e, fmt.Errorf("package %q is not a linux-image-%s.* package", e.pkg, e.series)
	}
	if !strings.Contains(e.pkg, "-"+e.arch) {
		return e, fmt.Errorf("package %q is not an %s kernel", e.pkg, e.arch)
	}
	for _, opt := range fs[3:] {
		k, v, ok := strings.Cut(opt, "=")
		if ok && k == "independent" {
			series, arch, _ := strings.Cut(v, "/")
			if series != e.series || arch == "" || arch == e.arch {
				return e, fmt.Errorf("independent=%s: want %s/<another arch>, the same kernel series built for another architecture", v, e.series)
			}
			e.independentOn = v
			continue
		}
		if !ok || k != "tiers" {
			return e, fmt.Errorf("unknown field %q: %s", opt, kernelLineForm)
		}
		var tiers []string
		for _, t := range strings.Split(v, ",") {
			if !slices.Contains(allTiers, t) {
				return e, fmt.Errorf("tiers=%s: unknown tier %q (want fentry, kprobe or tracepoint)", v, t)
			}
			if slices.Contains(tiers, t) {
				return e, fmt.Errorf("tiers=%s: %s twice", v, t)
			}
			tiers = append(tiers, t)
		}
		// Listed order, whatever the line's: summaries compare them.
		e.tiers = nil
		for _, t := range allTiers {
			if slices.Contains(tiers, t) {
				e.tiers = append(e.tiers, t)
			}
		}
	}
	return e, nil
}

// selectKernels picks the kernels of a run: the listed ones of arch ("":
// every arch listed), or the one --kernel names, of arch or else the
// host's (6.1 is listed for amd64 and arm64; --kernel means one kernel). A
// listed series or package selects its line (and its tiers); anything
// else is tried as given, offering every tier, so a new kernel can be
// tried before it is listed.
func selectKernels(list []kernelEntry, kernel, arch string) ([]kernelEntry, error) {
	if arch != "" {
		if _, err := lookupArch(arch); err != nil {
			return nil, fmt.Errorf("--arch: %w", err)
		}
	}
	if kernel != "" && arch == "" {
		arch = runtime.GOARCH
		// A package names its arch: --kernel <arm64 package> needs no --arch.
		for _, e := range list {
			if e.pkg == kernel {
				arch = e.arch
			}
		}
	}
	var out []kernelEntry
	for _, e := range list {
		if arch != "" && e.arch != arch {
			continue
		}
		if kernel == "" || kernel == e.series || kernel == e.pkg {
			out = append(out, e)
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case kernel == "" && arch != "":
		return nil, fmt.Errorf("the kernel list names no %s kernel", arch)
	case kernel == "":
		return nil, errors.New("the kernel list names no kernels")
	}
	e := kernelEntry{arch: arch, tiers: allTiers, where: "--kernel"}
	switch {
	case seriesRE.MatchString(kernel):
		e.series = kernel
	case strings.HasPrefix(kernel, "linux-image-"):
		e.pkg = kernel
	default:
		return nil, fmt.Errorf("--kernel %q: want a series like 6.1 or a linux-image-* package name", kernel)
	}
	return []kernelEntry{e}, nil
}

var seriesRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// resolveKernel returns the entry's package; an unlisted series resolves to
// the newest cloud kernel of that series apt knows. Newer Debian releases
// dropped the -unsigned packages (sid's 7.2 is linux-image-*-cloud-amd64),
// so both names are candidates.
func resolveKernel(e kernelEntry, c *cache) (string, error) {
	if e.pkg != "" {
		return e.pkg, nil
	}
	// 6.1 packages look like linux-image-6.1.0-56-cloud-amd64-unsigned and
	// 6.12 ones like linux-image-6.12.117+deb12-cloud-amd64-unsigned; the
	// "\.[0-9]+[-+]" keeps "6.1" from matching 6.12.
	pattern := "^linux-image-" + regexp.QuoteMeta(e.series) + `\.[0-9]+[-+].*-cloud-` + e.arch + "(-unsigned)?$"
	names, err := c.apt.search(pattern, e.arch)
	if err != nil {
		slog.Warn("apt search failed, falling back to cached kernels", "series", e.series, "err", err)
	}
	if len(names) == 0 {
		// Offline: whatever an earlier run unpacked still boots.
		re := regexp.MustCompile(pattern)
		dirs, _ := os.ReadDir(c.path("kernels"))
		for _, d := range dirs {
			if re.MatchString(d.Name()) {
				names = append(names, d.Name())
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no %s package matches kernel series %s (%s) in vmtest's apt lists (%s): pin a package name in the kernel list", e.arch, e.series, pattern, c.apt.dir)
	}
	// The unsigned build sorts after the signed one of the same version.
	best := names[0]
	for _, n := range names[1:] {
		if naturalLess(best, n) {
			best = n
		}
	}
	return best, nil
}

// naturalLess compares digit runs by value, so -56 sorts after -9 and
// 6.12.117 after 6.12.99.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, ra := splitDigits(a)
			nb, rb := splitDigits(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// fetchKernel downloads and unpacks a kernel package unless an earlier run
// already did. The tree is unpacked beside its final name and renamed, so an
// interrupted run never leaves a half tree that later runs would trust.
func fetchKernel(pkg string, a *arch, c *cache) (*kernel, error) {
	tree := c.path("kernels", pkg)
	if _, err := os.Stat(tree); errors.Is(err, os.ErrNotExist) {
		debs, err := kernelDebs(pkg, a, c)
		if err != nil {
			return nil, err
		}
		slog.Info("unpacking kernel", "package", pkg, "debs", len(debs))
		if err := c.unpackAll(debs, tree); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("checking cached kernel: %w", err)
	}
	return readKernelTree(pkg, tree)
}

// kernelDebs returns the package and, for a split kernel, its parts. Since
// 7.x Debian's linux-image-* is an empty package depending on
// linux-binary-<release> (the image), linux-modules-<release> and
// linux-base-<release> (config, modules.builtin): the parts are the
// dependencies that carry the package's release name, which an
// unsplit package's dependencies (kmod, linux-base, initramfs-tools) never do.
func kernelDebs(pkg string, a *arch, c *cache) ([]string, error) {
	deb, err := c.apt.download(pkg, a.name)
	if err != nil {
		return nil, err
	}
	depends, err := runTool("", "dpkg-deb", "-f", deb, "Depends")
	if err != nil {
		return nil, fmt.Errorf("reading dependencies of %s: %w", pkg, err)
	}
	debs := []string{deb}
	for _, name := range kernelParts(pkg, string(depends)) {
		d, err := c.apt.download(name, a.name)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: part %s: %w", pkg, name, err)
		}
		debs = append(debs, d)
	}
	return debs, nil
}

// kernelParts picks from a Depends field the packages named after the
// kernel's release (the package name without linux-image- and -unsigned).
func kernelParts(pkg, depends string) []string {
	release := strings.TrimSuffix(strings.TrimPrefix(pkg, "linux-image-"), "-unsigned")
	var parts []string
	for _, dep := range strings.Split(depends, ",") {
		for _, alt := range strings.Split(dep, "|") {
			name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
			name, _, _ = strings.Cut(name, ":")
			if name != pkg && strings.HasSuffix(name, "-"+release) && !slices.Contains(parts, name) {
				parts = append(parts, name)
			}
		}
	}
	return parts
}

// readKernelTree finds the release, modules and image in an unpacked tree:
// under lib/modules and boot/ in older packages, all under
// usr/lib/modules/<release> (vmlinuz included) in newer ones.
func readKernelTree(pkg, tree string) (*kernel, error) {
	k := &kernel{pkg: pkg, tree: tree}
	raw, err := os.ReadFile(filepath.Join(tree, debVersionFile))
	if err != nil {
		return nil, fmt.Errorf("reading version of %s: %w", pkg, err)
	}
	// "6.1.192-2" and "6.12.117-1~deb12u1" both start with the upstream version.
	k.version, _, _ = strings.Cut(strings.TrimSpace(string(raw)), "-")

	var mods []string
	for _, dir := range []string{"lib/modules/*", "usr/lib/modules/*"} {
		m, _ := filepath.Glob(filepath.Join(tree, dir))
		mods = append(mods, m...)
	}
	if len(mods) != 1 {
		return nil, fmt.Errorf("kernel %s: want one lib/modules or usr/lib/modules directory, found %d", pkg, len(mods))
	}
	k.modules = mods[0]
	k.release = filepath.Base(mods[0])
	for _, p := range []string{
		filepath.Join(tree, "boot", "vmlinuz-"+k.release),
		filepath.Join(tree, "boot", "Image-"+k.release),
		filepath.Join(tree, "boot", "Image"),
		filepath.Join(k.modules, "vmlinuz"),
		filepath.Join(k.modules, "Image"),
	} {
		if fileExists(p) {
			k.image = p
			break
		}
	}
	if k.image == "" {
		return nil, fmt.Errorf("kernel %s: no vmlinuz or Image under boot/ or %s", pkg, k.modules)
	}
	return k, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
