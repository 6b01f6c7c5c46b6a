package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestAptSourcesFile(t *testing.T) {
	want := `# Written by vmtest (vmtest/apt.go); rewritten when it differs.
Types: deb
URIs: http://mirror.example/debian
Suites: bullseye bookworm bookworm-updates trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`
	if got := string(aptSourcesFile("http://mirror.example/debian/")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestDebianMirror: the main archive of the host's sources, deb822 first,
// never a security archive or a deb-src line; the default without one.
func TestDebianMirror(t *testing.T) {
	for _, tc := range []struct {
		name, file, text, want, from string
	}{
		{"deb822", "sources.list.d/debian.sources",
			"Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n" +
				"Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n" +
				"# a comment\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n",
			"http://mirror.example/debian", "sources.list.d/debian.sources"},
		{"disabled deb822", "sources.list.d/x.sources",
			"Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n", defaultMirror, ""},
		{"one-line", "sources.list",
			"deb-src http://src.example/debian bookworm main\n" +
				"deb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian bookworm main\n",
			"http://mirror.example/debian", "sources.list"},
		{"none", "sources.list", "# nothing\n", defaultMirror, ""},
	} {
		etc := t.TempDir()
		os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755)
		os.WriteFile(filepath.Join(etc, tc.file), []byte(tc.text), 0o644)
		uri, from := debianMirror(etc)
		wantFrom := filepath.Join(etc, tc.from)
		if tc.from == "" {
			wantFrom = "the default (no Debian archive in " + etc + "/sources.list*)"
		}
		if uri != tc.want || from != wantFrom {
			t.Errorf("%s: got %q from %q, want %q from %q", tc.name, uri, from, tc.want, wantFrom)
		}
	}
}

// TestAptArgsIsolate: every path apt would write or read state from is
// under vmtest's directory, and a lookup sees one architecture.
func TestAptArgsIsolate(t *testing.T) {
	p := &apt{dir: "/c/apt", sources: "/c/apt/vmtest.sources"}
	got := p.args("arm64")
	for _, want := range []string{
		"Dir::Etc::SourceList=/c/apt/vmtest.sources", "Dir::Etc::SourceParts=/c/apt/empty.d",
		"Dir::Etc::Preferences=/dev/null", "Dir::Etc::PreferencesParts=/c/apt/empty.d",
		"Dir::State=/c/apt/state", "Dir::State::Lists=/c/apt/lists", "Dir::State::status=/c/apt/state/status",
		"Dir::Cache=/c/apt/cache", "APT::Architecture=arm64", "APT::Architectures::=arm64",
		"Dir::Cache::pkgcache=/c/apt/cache/pkgcache-arm64.bin",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("args(arm64) lack %q: %q", want, got)
		}
	}
	if slices.Contains(got, "APT::Architectures::=amd64") {
		t.Errorf("args(arm64) offer amd64 too: %q", got)
	}
	up := p.args("")
	for _, want := range []string{"APT::Architectures::=amd64", "APT::Architectures::=arm64"} {
		if !slices.Contains(up, want) {
			t.Errorf("update args lack %q: %q", want, up)
		}
	}
}

// TestFindDebArch: the same package for two architectures is two files;
// before, any busybox-static_*.deb served both.
func TestFindDebArch(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"busybox-static_1%3a1.35.0-4+b3_amd64.deb", "busybox-static_1%3a1.38.0-3+b1_arm64.deb", "tzdata_2025a-1_all.deb"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	for _, tc := range []struct{ pkg, arch, want string }{
		{"busybox-static", "amd64", "busybox-static_1%3a1.35.0-4+b3_amd64.deb"},
		{"busybox-static", "arm64", "busybox-static_1%3a1.38.0-3+b1_arm64.deb"},
		{"tzdata", "arm64", "tzdata_2025a-1_all.deb"},
		{"iproute2", "arm64", ""},
	} {
		got := findDeb(dir, tc.pkg, tc.arch)
		if tc.want != "" {
			tc.want = filepath.Join(dir, tc.want)
		}
		if got != tc.want {
			t.Errorf("findDeb(%s, %s) = %q, want %q", tc.pkg, tc.arch, got, tc.want)
		}
	}
}

// Two vmtest processes (two opens of one apt directory) take turns: apt-get
// refuses a second update of the same lists while one runs.
func TestAptLockAcrossOpens(t *testing.T) {
	c := &cache{root: t.TempDir()}
	first, err := openApt(c)
	if err != nil {
		t.Fatal(err)
	}
	second, err := openApt(c)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := first.lock()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		unlockSecond, err := second.lock()
		if err != nil {
			t.Error(err)
		} else {
			unlockSecond()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("the second open took the lock while the first held it")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	<-got
}
