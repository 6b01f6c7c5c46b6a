package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cells the summary shows for the guest's INCIDENT-RESULT lines.
func TestIncidentCell(t *testing.T) {
	r := &incidentKernel{}
	for _, line := range []string{
		"INCIDENT-RESULT tier=kprobe scenario=restart status=pass removed=18 reported=18 kernel=5 blocked=0 would_block=0 repaired=0 missing_med_us=0 missing_max_us=0 took=43.1s reason=-",
		"INCIDENT-RESULT tier=kprobe scenario=enforce-block status=fail removed=6 reported=6 kernel=5 blocked=12 would_block=1 repaired=0 missing_med_us=0 missing_max_us=0 took=80.2s reason=nd0 is \"failed\", want configured",
		"INCIDENT-RESULT tier=kprobe scenario=enforce-repair status=pass removed=7 reported=7 kernel=6 blocked=0 would_block=1 repaired=12 missing_med_us=310 missing_max_us=940 took=45.0s reason=-",
		"INCIDENT-RESULT tier=kprobe scenario=reconfigure status=once once_tier=tracepoint reason=runs once per kernel, under tracepoint",
	} {
		f := markerFields(line[len("INCIDENT-RESULT "):])
		r.results = append(r.results, incidentResult{tier: f["tier"], scenario: f["scenario"], status: f["status"], fields: f})
	}
	for scen, want := range map[string]string{
		"restart":        "pass 18/18 (5 kernel) 43.1s",
		"enforce-block":  "fail 6/6 (5 kernel); 12 blocked, 1 would-block 80.2s",
		"enforce-repair": "pass 7/7 (6 kernel); 1 would-block, 12 repaired (missing 310/940 µs) 45.0s",
		"reload":         "-",
		"reconfigure":    "once: see tracepoint",
	} {
		if got := incidentCell(r, "kprobe", scen); got != want {
			t.Errorf("%s: cell %q, want %q", scen, got, want)
		}
	}
}

// A kernel that ran restart alone (--variants-kernel) shows where its
// variants ran, and only once the guest finished.
func TestIncidentCellVariantsElsewhere(t *testing.T) {
	r := &incidentKernel{variantsOn: "6.12"}
	if got := incidentCell(r, "fentry", "reload"); got != "-" {
		t.Errorf("unfinished guest: cell %q, want -", got)
	}
	r.done = true
	if got := incidentCell(r, "fentry", "reload"); got != "variants: see 6.12" {
		t.Errorf("cell %q, want variants: see 6.12", got)
	}
	if got := incidentCell(r, "fentry", "restart"); got != "-" {
		t.Errorf("restart without a result: cell %q, want -", got)
	}
}

// Every architecture's kernels reach the one summary (each architecture's
// run used to write --summary-json on its own, the last one winning).
func TestIncidentReportsAllArches(t *testing.T) {
	dir := t.TempDir()
	o := &options{summaryJSON: filepath.Join(dir, "incident.json"), summaryMD: filepath.Join(dir, "incident.md")}
	amd := &incidentKernel{label: "6.1 amd64", entry: kernelEntry{series: "6.1", arch: "amd64", tiers: allTiers},
		k:       &kernel{version: "6.1.192", pkg: "linux-image-6.1.0-56-cloud-amd64-unsigned"},
		results: []incidentResult{{tier: "fentry", scenario: "restart", status: "pass"}, {tier: "kprobe", scenario: "restart", status: "pass"}}}
	arm := &incidentKernel{label: "6.1 arm64", entry: kernelEntry{series: "6.1", arch: "arm64", tiers: []string{"kprobe", "tracepoint"}},
		k:       &kernel{version: "6.1.192", pkg: "linux-image-6.1.0-56-cloud-arm64-unsigned"},
		results: []incidentResult{{tier: "kprobe", scenario: "restart", status: "pass"}}}
	ok, err := writeIncidentReports(o, []*incidentKernel{amd, arm}, []string{"fentry", "kprobe"}, time.Now(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Error("not ok, want ok: each kernel passed what it offers")
	}
	data, err := os.ReadFile(o.summaryJSON)
	if err != nil {
		t.Fatal(err)
	}
	var rep runReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Kernels) != 2 || rep.Kernels[0].Arch != "amd64" || rep.Kernels[1].Arch != "arm64" ||
		rep.Kernels[0].Incident["fentry"]["restart"] != "pass" || rep.Kernels[1].Incident["kprobe"]["restart"] != "pass" {
		t.Errorf("summary JSON %s: want amd64's fentry and arm64's kprobe restart, both pass", data)
	}
	md, _ := os.ReadFile(o.summaryMD)
	for _, row := range []string{"| 6.1.192 amd64 | fentry | pass", "| 6.1.192 arm64 | fentry | not offered", "| 6.1.192 arm64 | kprobe | pass"} {
		if !strings.Contains(string(md), row) {
			t.Errorf("markdown summary lacks %q:\n%s", row, md)
		}
	}
}
