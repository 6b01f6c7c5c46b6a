package main

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
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
	os.WriteFile(p, []byte("# comment\n"+
		"5.10 amd64 linux-image-5.10.0-32-cloud-amd64-unsigned  # bullseye\n"+
		"\n"+
		"6.1 arm64 linux-image-6.1.0-56-cloud-arm64-unsigned tiers=tracepoint,kprobe independent=6.1/amd64 # no fentry\n"+
		"7.2 amd64 linux-image-7.2.13+deb14-cloud-amd64\n"+
		"6.1 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned\n"), 0o644)
	got, err := readKernelList(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []kernelEntry{
		{series: "5.10", arch: "amd64", pkg: "linux-image-5.10.0-32-cloud-amd64-unsigned", tiers: allTiers, note: "bullseye", where: p + ":2"},
		// tiers in allTiers order, whatever the line's
		{series: "6.1", arch: "arm64", pkg: "linux-image-6.1.0-56-cloud-arm64-unsigned", tiers: []string{"kprobe", "tracepoint"},
			independentOn: "6.1/amd64", note: "no fentry", where: p + ":4"},
		{series: "7.2", arch: "amd64", pkg: "linux-image-7.2.13+deb14-cloud-amd64", tiers: allTiers, where: p + ":5"},
		{series: "6.1", arch: "amd64", pkg: "linux-image-6.1.0-56-cloud-amd64-unsigned", tiers: allTiers, where: p + ":6"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestReadKernelListErrors: every refusal names the file and line.
func TestReadKernelListErrors(t *testing.T) {
	for _, tc := range []struct{ list, want string }{
		{"6.1\n", `:1: "6.1": want <series> <arch> <linux-image-* package> [tiers=fentry,kprobe,tracepoint] [independent=<series>/<arch>]`},
		{"# c\n6.1 amd64\n", `:2: "6.1 amd64": want <series>`},
		{"6 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned\n", `:1: series "6": want major.minor such as 6.1`},
		{"6.1 riscv64 linux-image-6.1.0-56-cloud-riscv64-unsigned\n", `:1: unsupported architecture "riscv64" (want amd64 or arm64)`},
		{"6.1 amd64 linux-image-6.12.117+deb12-cloud-amd64-unsigned\n", `:1: package "linux-image-6.12.117+deb12-cloud-amd64-unsigned" is not a linux-image-6.1.* package`},
		{"6.1 arm64 linux-image-6.1.0-56-cloud-amd64-unsigned\n", `:1: package "linux-image-6.1.0-56-cloud-amd64-unsigned" is not an arm64 kernel`},
		{"6.1 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned tiers=fentry,fexit\n", `:1: tiers=fentry,fexit: unknown tier "fexit" (want fentry, kprobe or tracepoint)`},
		{"6.1 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned tiers=kprobe,kprobe\n", `:1: tiers=kprobe,kprobe: kprobe twice`},
		{"6.1 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned tiers=\n", `:1: tiers=: unknown tier "" (want fentry, kprobe or tracepoint)`},
		{"6.1 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned arch=arm64\n", `:1: unknown field "arch=arm64": want <series>`},
		{"6.1 amd64 linux-image-6.1.0-55-cloud-amd64-unsigned\n6.1 amd64 linux-image-6.1.0-56-cloud-amd64-unsigned\n", `:2: series 6.1 for amd64 is already listed at `},
		{"# only comments\n", `names no kernels`},
		{"6.1 arm64 linux-image-6.1.0-56-cloud-arm64-unsigned independent=6.12/amd64\n", `:1: independent=6.12/amd64: want 6.1/<another arch>, the same kernel series built for another architecture`},
		{"6.1 arm64 linux-image-6.1.0-56-cloud-arm64-unsigned independent=6.1/arm64\n", `:1: independent=6.1/arm64: want 6.1/<another arch>`},
		{"6.1 arm64 linux-image-6.1.0-56-cloud-arm64-unsigned independent=6.1\n", `:1: independent=6.1: want 6.1/<another arch>`},
		{"6.1 arm64 linux-image-6.1.0-56-cloud-arm64-unsigned independent=6.1/amd64\n", `:1: independent=6.1/amd64: no amd64 kernel of series 6.1 is listed to run them`},
	} {
		p := filepath.Join(t.TempDir(), "kernels.txt")
		os.WriteFile(p, []byte(tc.list), 0o644)
		_, err := readKernelList(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.list, err, tc.want)
		}
	}
}

func TestSelectKernels(t *testing.T) {
	list := []kernelEntry{
		{series: "5.10", arch: "amd64", pkg: "linux-image-5.10.0-32-cloud-amd64-unsigned", tiers: allTiers},
		{series: "6.1", arch: "amd64", pkg: "linux-image-6.1.0-56-cloud-amd64-unsigned", tiers: allTiers},
		{series: "6.1", arch: "arm64", pkg: "linux-image-6.1.0-56-cloud-arm64-unsigned", tiers: []string{"kprobe", "tracepoint"}},
	}
	for _, tc := range []struct {
		kernel, arch string
		want         []kernelEntry
		err          string
	}{
		{kernel: "", arch: "", want: list},
		{kernel: "", arch: "arm64", want: list[2:]},
		{kernel: "6.1", arch: "", want: hostArch(list[1:])}, // one kernel: the host's arch
		{kernel: "6.1", arch: "arm64", want: list[2:]},
		{kernel: "6.1", arch: "amd64", want: list[1:2]},
		{kernel: "linux-image-6.1.0-56-cloud-arm64-unsigned", want: list[2:]},
		// unlisted: tried as given, every tier
		{kernel: "6.6", arch: "amd64", want: []kernelEntry{{series: "6.6", arch: "amd64", tiers: allTiers, where: "--kernel"}}},
		{kernel: "linux-image-6.1.0-55-cloud-amd64-unsigned", arch: "amd64", want: []kernelEntry{{arch: "amd64", pkg: "linux-image-6.1.0-55-cloud-amd64-unsigned", tiers: allTiers, where: "--kernel"}}},
		{kernel: "5.10", arch: "s390x", err: `--arch: unsupported architecture "s390x" (want amd64 or arm64)`},
		{kernel: "6.1.0", err: `--kernel "6.1.0": want a series like 6.1 or a linux-image-* package name`},
		{kernel: "", arch: "arm64", want: list[2:]},
	} {
		got, err := selectKernels(list, tc.kernel, tc.arch)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("--kernel %q --arch %q: got %v, want error %q", tc.kernel, tc.arch, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("--kernel %q --arch %q: got %+v, %v; want %+v", tc.kernel, tc.arch, got, err, tc.want)
		}
	}
	if _, err := selectKernels(list[:2], "", "arm64"); err == nil || err.Error() != "the kernel list names no arm64 kernel" {
		t.Errorf("no arm64 kernel listed: got %v", err)
	}
}

func hostArch(es []kernelEntry) []kernelEntry {
	var out []kernelEntry
	for _, e := range es {
		if e.arch == runtime.GOARCH {
			out = append(out, e)
		}
	}
	return out
}

// TestKernelTiers: a kernel runs only the tiers it offers, and expects
// them unless --expect-tiers narrows the run; a tier it lacks is never
// expected.
func TestKernelTiers(t *testing.T) {
	arm := kernelEntry{tiers: []string{"kprobe", "tracepoint"}}
	all := kernelEntry{tiers: allTiers}
	run := []string{"fentry", "kprobe", "tracepoint"}
	if got, want := kernelTiers(run, arm), []string{"kprobe", "tracepoint"}; !reflect.DeepEqual(got, want) {
		t.Errorf("arm64 tiers: got %q, want %q", got, want)
	}
	if got, want := kernelTiers([]string{"auto"}, arm), []string{"auto"}; !reflect.DeepEqual(got, want) {
		t.Errorf("auto: got %q, want %q", got, want)
	}
	if got := kernelExpect(&runSpec{}, arm); !reflect.DeepEqual(got, arm.tiers) {
		t.Errorf("default expect: got %q, want the line's tiers", got)
	}
	if got := kernelExpect(&runSpec{narrowed: true}, all); got != nil {
		t.Errorf("--expect-tiers none: got %q, want none", got)
	}
	if got, want := kernelExpect(&runSpec{narrowed: true, expect: []string{"fentry", "kprobe"}}, arm), []string{"kprobe"}; !reflect.DeepEqual(got, want) {
		t.Errorf("--expect-tiers fentry,kprobe on arm64: got %q, want %q", got, want)
	}
}

// TestNotOfferedCell: a tier the list says the kernel lacks reads "not
// offered" and does not fail the run, though it has no results.
func TestNotOfferedCell(t *testing.T) {
	r := &kernelResult{label: "6.1 arm64", entry: kernelEntry{tiers: []string{"kprobe", "tracepoint"}}, done: true,
		runs: []*testRun{
			{tier: "kprobe", binary: "tracer.test", status: "pass", pass: 3},
			{tier: "tracepoint", binary: "tracer.test", status: "pass", pass: 2, skip: 1},
		}}
	cells := summarize(r, []string{"fentry", "kprobe", "tracepoint"}, []string{"tracer.test"})
	want := []string{"not offered (reason in kernels.txt)", "PASS 3/0/0", "PASS 2/0/1"}
	for i, c := range cells {
		if c.String() != want[i] || !c.ok() {
			t.Errorf("cell %d: got %q (ok %v), want %q, ok", i, c.String(), c.ok(), want[i])
		}
	}
}

// TestKernelParts: a split kernel's parts are its dependencies named after
// its release; an unsplit one has none.
func TestKernelParts(t *testing.T) {
	got := kernelParts("linux-image-7.2.13+deb14-cloud-amd64",
		"dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), "+
			"linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)")
	want := []string{"linux-base-7.2.13+deb14-cloud-amd64", "linux-binary-7.2.13+deb14-cloud-amd64", "linux-modules-7.2.13+deb14-cloud-amd64"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("7.2: got %q, want %q", got, want)
	}
	if got := kernelParts("linux-image-6.1.0-56-cloud-amd64-unsigned", "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool"); got != nil {
		t.Errorf("6.1: got %q, want none", got)
	}
}

// TestReadKernelTree: the image and modules of both package layouts.
func TestReadKernelTree(t *testing.T) {
	for _, tc := range []struct {
		name, modules, image string
	}{
		{"classic", "lib/modules/6.1.0-56-cloud-amd64", "boot/vmlinuz-6.1.0-56-cloud-amd64"},
		{"usr-merged", "usr/lib/modules/7.2.13+deb14-cloud-amd64", "usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz"},
	} {
		tree := t.TempDir()
		os.MkdirAll(filepath.Join(tree, tc.modules), 0o755)
		os.MkdirAll(filepath.Dir(filepath.Join(tree, tc.image)), 0o755)
		os.WriteFile(filepath.Join(tree, tc.image), []byte("MZ"), 0o644)
		os.WriteFile(filepath.Join(tree, debVersionFile), []byte("7.2.13-1\n"), 0o644)
		k, err := readKernelTree("pkg", tree)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := kernel{pkg: "pkg", version: "7.2.13", release: filepath.Base(tc.modules), tree: tree,
			modules: filepath.Join(tree, tc.modules), image: filepath.Join(tree, tc.image)}
		if *k != want {
			t.Errorf("%s: got %+v, want %+v", tc.name, *k, want)
		}
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

// A kernel whose tier-independent tests run elsewhere says where, and runs
// none of them under any tier (no once tier).
func TestGuestConfigIndependentOn(t *testing.T) {
	for _, tc := range []struct {
		on, want, notWant string
	}{
		{on: "", want: "export ROUTETRACE_VMTEST_ONCE_TIER='tracepoint'\n", notWant: "INDEPENDENT_ON"},
		{on: "6.1/amd64", want: "export ROUTETRACE_VMTEST_INDEPENDENT_ON='6.1/amd64'\n", notWant: "ONCE_TIER"},
	} {
		cfg, err := guestConfig(&runSpec{tiers: []string{"kprobe", "tracepoint"}, independentOn: tc.on})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cfg), tc.want) || strings.Contains(string(cfg), tc.notWant) {
			t.Errorf("independentOn %q: config\n%s\nwant %q and no %s", tc.on, cfg, tc.want, tc.notWant)
		}
	}
}
