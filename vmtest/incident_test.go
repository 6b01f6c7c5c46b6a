package main

import "testing"

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
