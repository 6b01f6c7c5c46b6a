package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRenderTable: the README's kernel table from the three runs' JSON,
// exact, including a kernel that offers no fentry and a failed variant.
func TestRenderTable(t *testing.T) {
	probe := func(tier, refusal string) json.RawMessage {
		hook := map[string]any{"fn": "fib_table_delete", "tier": tier}
		if refusal != "" {
			hook["refused"] = []map[string]string{{"tier": "fentry", "reason": refusal}}
		}
		b, _ := json.Marshal(map[string]any{
			"hooks":   []any{hook, map[string]any{"fn": "ip_rt_ioctl", "tier": tier}},
			"capture": "socket",
			"enforce": map[string]string{"audit": "", "block": "", "repair": ""},
		})
		return b
	}
	tests := runReport{Kind: "tests", Kernels: []kernelReport{
		{Version: "6.1.192", Package: "linux-image-6.1.0-56-cloud-amd64-unsigned", Arch: "amd64", Probe: probe("fentry", ""),
			Tiers: map[string]tierReport{"fentry": {"PASS", 10, 0, 3}, "kprobe": {"PASS", 10, 0, 3}, "tracepoint": {"PASS", 13, 0, 0}}},
		{Version: "6.1.176", Package: "linux-image-6.1.0-50-cloud-arm64-unsigned", Arch: "arm64", Probe: probe("kprobe", "not supported (no BPF trampolines)"),
			Tiers: map[string]tierReport{"fentry": {Status: "not offered (reason in kernels.txt)"}, "kprobe": {"PASS", 10, 0, 3}, "tracepoint": {"FAIL", 12, 1, 0}}},
	}}
	enforcer := runReport{Kind: "tests", Kernels: []kernelReport{
		{Version: "6.1.192", Package: "linux-image-6.1.0-56-cloud-amd64-unsigned", Arch: "amd64", Tiers: map[string]tierReport{"auto": {"PASS", 20, 0, 0}}},
	}}
	incident := runReport{Kind: "incident", Kernels: []kernelReport{
		{Version: "6.1.192", Package: "linux-image-6.1.0-56-cloud-amd64-unsigned", Arch: "amd64", Incident: map[string]map[string]string{
			"fentry":     {"restart": "pass", "reload": "once"},
			"kprobe":     {"restart": "pass", "reload": "once"},
			"tracepoint": {"restart": "pass", "reload": "fail"},
		}},
		// No fentry result: arm64 6.1 does not offer it.
		{Version: "6.1.176", Package: "linux-image-6.1.0-50-cloud-arm64-unsigned", Arch: "arm64", Incident: map[string]map[string]string{
			"kprobe": {"restart": "pass"},
		}},
	}}
	var b strings.Builder
	renderTable(&b, []runReport{tests, enforcer, incident})
	got := b.String()
	for _, want := range []string{
		"| 6.1.192 | amd64 | `linux-image-6.1.0-56-cloud-amd64-unsigned` | PASS 10/0/3 | PASS 10/0/3 | PASS 13/0/0 | PASS 20/0/0 | 1 pass / 1 pass / 1 pass, **1 fail** |\n",
		"| 6.1.176 | arm64 | `linux-image-6.1.0-50-cloud-arm64-unsigned` | not offered (reason in kernels.txt) | PASS 10/0/3 | FAIL 12/1/0 | not run | not offered / 1 pass / not run |\n",
		"- **6.1.192 amd64**: every hook: fentry; tier 3 capture: socket; enforce: audit, block, repair\n",
		"- **6.1.176 arm64**: every hook: kprobe; fentry refused: not supported (no BPF trampolines) (fib_table_delete); tier 3 capture: socket; enforce: audit, block, repair\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no line\n%q\nin\n%s", want, got)
		}
	}
}

func TestReplaceBetween(t *testing.T) {
	doc := "# x\n" + tableBegin + "\nold\n" + tableEnd + "\nafter\n"
	got, err := replaceBetween(doc, tableBegin, tableEnd, "new\n")
	if want := "# x\n" + tableBegin + "\nnew\n" + tableEnd + "\nafter\n"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	if _, err := replaceBetween("# x\n", tableBegin, tableEnd, "new\n"); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Fatalf("no markers: %v", err)
	}
}
