package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// apt is vmtest's own apt configuration, under the cache's apt/ directory.
// The kernels vmtest boots come from several Debian releases (bullseye's
// 5.10, sid's 7.2) and the arm64 guest needs arm64 userland; the host's apt
// knows neither, and changing the host's sources or architectures to get
// them would change what the host installs. So every download goes through
// this configuration: its own sources, lists, package cache and (empty)
// dpkg status, and the host's apt state is never written.
type apt struct {
	dir     string // the cache's apt/ directory
	debs    string // where downloaded .debs are kept
	mirror  string // Debian archive URI, from the host's sources
	from    string // where mirror came from, for error messages
	sources string // the deb822 sources file written under dir

	mu      sync.Mutex
	updated bool // apt-get update ran in this process: never twice
}

// aptSuites are the Debian suites whose kernels and userland vmtest uses:
// bullseye for 5.10, bookworm (and its updates and security suites, where
// point releases of 6.1 and 6.12 land) for 6.1 and 6.12, trixie, and sid
// for the newest kernel.
var aptSuites = []string{"bullseye", "bookworm", "bookworm-updates", "trixie", "sid"}

// aptSecuritySuites live in the separate debian-security archive.
var aptSecuritySuites = []string{"bookworm-security"}

// aptArches are the architectures every update fetches lists for: update
// with fewer would delete the other architecture's lists.
var aptArches = []string{"amd64", "arm64"}

const defaultMirror = "http://deb.debian.org/debian"

// archiveKeyring is what Signed-By names; debian-archive-keyring installs it.
const archiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// openApt writes the configuration; it touches the network only later, in
// update, when a lookup needs lists.
func openApt(c *cache) (*apt, error) {
	p := &apt{dir: c.path("apt"), debs: c.path("debs")}
	p.mirror, p.from = debianMirror("/etc/apt")
	for _, d := range []string{"lists/partial", "cache/archives/partial", "state", "empty.d", "download"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating vmtest's apt directory: %w", err)
		}
	}
	unlock, err := p.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// An empty dpkg status: what the host has installed must not change
	// which packages this configuration offers or how it resolves them.
	status := filepath.Join(p.dir, "state", "status")
	if !fileExists(status) {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return nil, fmt.Errorf("creating vmtest's apt status: %w", err)
		}
	}
	p.sources = filepath.Join(p.dir, "vmtest.sources")
	want := aptSourcesFile(p.mirror)
	if old, err := os.ReadFile(p.sources); err != nil || !bytes.Equal(old, want) {
		if err := os.WriteFile(p.sources, want, 0o644); err != nil {
			return nil, fmt.Errorf("writing vmtest's apt sources: %w", err)
		}
		// Lists of another mirror or suite set are stale: the next lookup
		// updates (see haveLists).
		stale, _ := filepath.Glob(filepath.Join(p.dir, "lists", "*_Packages*"))
		for _, f := range stale {
			os.Remove(f)
		}
	}
	return p, nil
}

// aptSourcesFile is the deb822 sources file for a mirror. The security
// archive sits beside the main one (.../debian-security) on Debian's
// mirrors; on any other URI it is taken from deb.debian.org.
func aptSourcesFile(mirror string) []byte {
	mirror = strings.TrimSuffix(mirror, "/")
	security := "http://deb.debian.org/debian-security"
	if base, ok := strings.CutSuffix(mirror, "/debian"); ok {
		security = base + "/debian-security"
	}
	var b strings.Builder
	b.WriteString("# Written by vmtest (vmtest/apt.go); rewritten when it differs.\n")
	for i, s := range []struct {
		uri    string
		suites []string
	}{{mirror, aptSuites}, {security, aptSecuritySuites}} {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n",
			s.uri, strings.Join(s.suites, " "), archiveKeyring)
	}
	return []byte(b.String())
}

// debianMirror returns the Debian archive URI the host's apt uses, and the
// file it came from: a local mirror or proxy the host is set up for is
// what this machine can reach. Security archives are not mirrors of the
// main one, so they are passed over.
func debianMirror(etc string) (uri, from string) {
	files, _ := filepath.Glob(filepath.Join(etc, "sources.list.d", "*.sources"))
	sort.Strings(files)
	for _, f := range files {
		if u := mirrorFromDeb822(f); u != "" {
			return u, f
		}
	}
	lists, _ := filepath.Glob(filepath.Join(etc, "sources.list.d", "*.list"))
	sort.Strings(lists)
	for _, f := range append([]string{filepath.Join(etc, "sources.list")}, lists...) {
		if u := mirrorFromList(f); u != "" {
			return u, f
		}
	}
	return defaultMirror, "the default (no Debian archive in " + etc + "/sources.list*)"
}

func isMainArchive(uri string) bool {
	return (strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://")) &&
		!strings.Contains(uri, "security") && strings.HasSuffix(strings.TrimSuffix(uri, "/"), "/debian")
}

// mirrorFromDeb822 returns the first main-archive URI of an enabled deb
// stanza.
func mirrorFromDeb822(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(raw), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, u := range strings.Fields(fields["uris"]) {
			if isMainArchive(u) {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

// mirrorFromList does the same for one-line "deb [options] URI suite ..."
// sources.
func mirrorFromList(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || fs[0] != "deb" {
			continue
		}
		fs = fs[1:]
		if strings.HasPrefix(fs[0], "[") {
			for len(fs) > 0 && !strings.HasSuffix(fs[0], "]") {
				fs = fs[1:]
			}
			if len(fs) < 2 {
				continue
			}
			fs = fs[1:]
		}
		if isMainArchive(fs[0]) {
			return strings.TrimSuffix(fs[0], "/")
		}
	}
	return ""
}

// args is the configuration on apt's command line. arch is the one
// architecture lookups and downloads see ("" for update, which fetches all
// of aptArches): with a single architecture configured, a name means that
// architecture's package and search shows nothing else.
func (p *apt) args(arch string) []string {
	empty := filepath.Join(p.dir, "empty.d")
	args := []string{
		"-o", "Dir::Etc::SourceList=" + p.sources,
		"-o", "Dir::Etc::SourceParts=" + empty,
		// The host's pins would pick versions from the host's point of view.
		"-o", "Dir::Etc::Preferences=/dev/null",
		"-o", "Dir::Etc::PreferencesParts=" + empty,
		"-o", "Dir::State=" + filepath.Join(p.dir, "state"),
		"-o", "Dir::State::Lists=" + filepath.Join(p.dir, "lists"),
		"-o", "Dir::State::status=" + filepath.Join(p.dir, "state", "status"),
		"-o", "Dir::Cache=" + filepath.Join(p.dir, "cache"),
		"-o", "Acquire::Languages=none",
		// The lists and .debs are in root's cache, where _apt cannot write:
		// without this apt warns on every download.
		"-o", "APT::Sandbox::User=root",
	}
	if arch == "" {
		native := runtime.GOARCH
		args = append(args, "-o", "APT::Architecture="+native)
		for _, a := range aptArches {
			args = append(args, "-o", "APT::Architectures::="+a)
		}
		return args
	}
	// One package cache per architecture set: apt rebuilds its cache when
	// the configured architectures change, which would cost every switch.
	return append(args,
		"-o", "APT::Architecture="+arch, "-o", "APT::Architectures::="+arch,
		"-o", "Dir::Cache::pkgcache="+filepath.Join(p.dir, "cache", "pkgcache-"+arch+".bin"),
		"-o", "Dir::Cache::srcpkgcache="+filepath.Join(p.dir, "cache", "srcpkgcache-"+arch+".bin"))
}

// haveLists reports whether an update has left package lists.
func (p *apt) haveLists() bool {
	m, _ := filepath.Glob(filepath.Join(p.dir, "lists", "*_Packages*"))
	return len(m) > 0
}

// update fetches the lists once per process. Callers hold p.mu.
func (p *apt) update() error {
	if p.updated {
		return nil
	}
	p.updated = true
	if _, err := needTool("apt-get", "apt"); err != nil {
		return err
	}
	if !fileExists(archiveKeyring) {
		return fmt.Errorf("updating vmtest's apt lists: %s is missing: install it with `apt-get install debian-archive-keyring`", archiveKeyring)
	}
	start := time.Now()
	slog.Info("updating vmtest's apt lists", "mirror", p.mirror, "from", p.from,
		"suites", strings.Join(append(append([]string{}, aptSuites...), aptSecuritySuites...), ","), "dir", p.dir)
	if _, err := runTool("", "apt-get", append(p.args(""), "update")...); err != nil {
		return fmt.Errorf("updating vmtest's apt lists from %s (mirror taken from %s): %w", p.mirror, p.from, err)
	}
	slog.Info("updated vmtest's apt lists", "took", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// ensureLists updates when no lists exist yet.
func (p *apt) ensureLists() error {
	if p.haveLists() {
		return nil
	}
	return p.update()
}

// search returns the names of arch's packages matching a regular
// expression, sorted. With lists older than a wanted package it finds
// nothing; then it updates once and searches again.
func (p *apt) search(pattern, arch string) ([]string, error) {
	unlock, err := p.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := p.ensureLists(); err != nil {
		return nil, err
	}
	for {
		if _, err := needTool("apt-cache", "apt"); err != nil {
			return nil, err
		}
		out, err := runTool("", "apt-cache", append(p.args(arch), "search", "--names-only", pattern)...)
		if err != nil {
			return nil, fmt.Errorf("searching vmtest's apt lists for %s (%s): %w", pattern, arch, err)
		}
		var names []string
		for _, line := range strings.Split(string(out), "\n") {
			if name, _, ok := strings.Cut(line, " "); ok {
				names = append(names, name)
			}
		}
		if len(names) > 0 || p.updated {
			sort.Strings(names)
			return names, nil
		}
		if err := p.update(); err != nil {
			return nil, err
		}
	}
}

// download returns the path of arch's .deb of pkg, fetching it once into
// the cache. An arch-independent package ("all") serves every arch. pkg is
// a name, which gets the newest version of all suites, or name/suite
// (busybox-static/bookworm) for one suite's.
func (p *apt) download(pkg, arch string) (string, error) {
	target := pkg
	pkg, _, _ = strings.Cut(pkg, "/")
	if deb := findDeb(p.debs, pkg, arch); deb != "" {
		return deb, nil
	}
	unlock, err := p.lock()
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another vmtest may have fetched it while this one waited.
	if deb := findDeb(p.debs, pkg, arch); deb != "" {
		return deb, nil
	}
	if err := p.ensureLists(); err != nil {
		return "", err
	}
	if _, err := needTool("apt-get", "apt"); err != nil {
		return "", err
	}
	// A directory of its own: apt-get download writes into the current
	// one, and a failed download must leave nothing findDeb would trust.
	tmp, err := os.MkdirTemp(filepath.Join(p.dir, "download"), pkg+"-")
	if err != nil {
		return "", fmt.Errorf("downloading %s (%s): %w", pkg, arch, err)
	}
	defer os.RemoveAll(tmp)
	for {
		slog.Info("downloading package", "package", pkg, "arch", arch)
		_, err := runTool(tmp, "apt-get", append(p.args(arch), "download", target)...)
		if err == nil {
			break
		}
		// The lists may predate the package: update once and retry.
		if p.updated || !aptNotFound(err) {
			return "", fmt.Errorf("downloading %s (%s) with vmtest's apt (mirror %s from %s): %w; "+
				"if Debian dropped it, pick a package apt-cache %s search --names-only offers",
				pkg, arch, p.mirror, p.from, err, strings.Join(p.args(arch), " "))
		}
		if err := p.update(); err != nil {
			return "", err
		}
	}
	got, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(got) != 1 {
		return "", fmt.Errorf("downloading %s (%s): apt-get left %d %s_*.deb files, want 1", pkg, arch, len(got), pkg)
	}
	dst := filepath.Join(p.debs, filepath.Base(got[0]))
	if err := os.Rename(got[0], dst); err != nil {
		return "", fmt.Errorf("downloading %s (%s): %w", pkg, arch, err)
	}
	return dst, nil
}

// lock serializes vmtest's apt within this process and across the vmtest
// processes make vm runs side by side: apt-get refuses a second update of
// the same lists ("Could not get lock"), and two downloads of one package
// would race for its name.
func (p *apt) lock() (unlock func(), err error) {
	p.mu.Lock()
	f, err := os.OpenFile(filepath.Join(p.dir, "vmtest.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("locking vmtest's apt: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		p.mu.Unlock()
		return nil, fmt.Errorf("locking vmtest's apt: %w", err)
	}
	return func() { f.Close(); p.mu.Unlock() }, nil
}

// aptNotFound tells apt's "no such package" apart from network and
// permission failures, which an update would not cure.
func aptNotFound(err error) bool {
	for _, s := range []string{"Unable to locate package", "Can't select candidate version", "Can't find a source to download", "has no installation candidate"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// findDeb returns a complete download of pkg for arch: apt-get download
// names files <pkg>_<version>_<arch>.deb, and the same package for two
// architectures (busybox-static for amd64 and arm64) must not be confused.
func findDeb(dir, pkg, arch string) string {
	for _, a := range []string{arch, "all"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pkg+"_*_"+a+".deb"))
		sort.Slice(matches, func(i, j int) bool { return naturalLess(matches[i], matches[j]) })
		if len(matches) > 0 {
			return matches[len(matches)-1]
		}
	}
	return ""
}
