package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// cell is the outcome of all test binaries for one (kernel, tier).
type cell struct {
	status           string // PASS, FAIL, SKIP, ERROR (no result: the VM died or timed out), or notOffered
	pass, fail, skip int
}

// notOffered is a tier the kernel list says the kernel lacks: not run, and
// neither a skip (nothing was tried) nor a failure (nothing was expected).
const notOffered = "not offered (reason in kernels.txt)"

func (c cell) String() string {
	if c.status == notOffered {
		return c.status
	}
	return fmt.Sprintf("%s %d/%d/%d", c.status, c.pass, c.fail, c.skip)
}

func (c cell) ok() bool { return c.status == "PASS" || c.status == "SKIP" || c.status == notOffered }

// summarize folds the runs of one kernel into a cell per tier. A binary
// that never reported counts as ERROR, so a crash cannot pass as a skip.
func summarize(r *kernelResult, tiers, binaries []string) []cell {
	cells := make([]cell, len(tiers))
	if len(binaries) == 0 { // boot-only run
		for i := range cells {
			cells[i].status = "ERROR"
			if r.done {
				cells[i].status = "PASS"
			}
		}
		return cells
	}
	for i, tier := range tiers {
		c := &cells[i]
		if r.entry.tiers != nil && !r.entry.offers(tier) {
			c.status = notOffered
			continue
		}
		anyPass, anyFail, missing := false, false, false
		for _, bin := range binaries {
			var run *testRun
			for _, x := range r.runs {
				if x.tier == tier && x.binary == bin && x.status != "" {
					run = x
				}
			}
			if run == nil {
				missing = true
				continue
			}
			c.pass += run.pass
			c.fail += run.fail
			c.skip += run.skip
			anyPass = anyPass || run.status == "pass"
			anyFail = anyFail || run.status == "fail"
		}
		switch {
		case anyFail:
			c.status = "FAIL"
		case missing:
			c.status = "ERROR"
		case anyPass:
			c.status = "PASS"
		default:
			c.status = "SKIP"
		}
	}
	return cells
}

func kernelName(r *kernelResult) (name, pkg string) {
	if r.k == nil {
		return r.label, "?"
	}
	return r.k.version, r.k.pkg
}

// writeSummary prints the kernel x tier table for the terminal.
func writeSummary(w io.Writer, results []*kernelResult, tiers, binaries []string) {
	fmt.Fprintln(w, "\nvmtest summary (cells: STATUS passed/failed/skipped tests)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "KERNEL\tPACKAGE\tACCEL\tBOOT\tTOTAL\t%s\n", strings.Join(upper(tiers), "\t"))
	for _, r := range results {
		name, pkg := kernelName(r)
		boot := "-"
		if r.booted {
			boot = r.bootTime.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", name, pkg, orDash(r.accel), boot, r.total.Round(100*time.Millisecond))
		for _, c := range summarize(r, tiers, binaries) {
			fmt.Fprintf(tw, "\t%s", c)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	writeNotes(w, results, "  ")
}

// writeMarkdown writes the same table for the README. Timings are left out
// so regenerating it on another machine changes nothing but real results.
func writeMarkdown(w io.Writer, results []*kernelResult, tiers, binaries []string) {
	fmt.Fprintf(w, "| Kernel | Debian package | %s |\n", strings.Join(tiers, " | "))
	fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("---|", len(tiers)))
	for _, r := range results {
		name, pkg := kernelName(r)
		fmt.Fprintf(w, "| %s | `%s` |", name, pkg)
		for _, c := range summarize(r, tiers, binaries) {
			if c.status == notOffered {
				fmt.Fprintf(w, " %s |", c.status)
				continue
			}
			fmt.Fprintf(w, " %s (%d passed, %d failed, %d skipped) |", c.status, c.pass, c.fail, c.skip)
		}
		fmt.Fprintln(w)
	}
	writeNotes(w, results, "- ")
}

// writeNotes lists skip reasons and VM errors below a table.
func writeNotes(w io.Writer, results []*kernelResult, bullet string) {
	var lines []string
	for _, r := range results {
		name, _ := kernelName(r)
		if r.err != nil {
			lines = append(lines, fmt.Sprintf("%s%s: %v", bullet, name, r.err))
		}
		for _, run := range r.runs {
			// A subtest's skip is a case's note (its reason is in the
			// console log): counted per test, so no skip goes unseen.
			var parents []string
			subtests := map[string]int{}
			once, onceReason := 0, ""
			for _, s := range run.skips {
				// Tests that do not depend on the tier skip under all
				// tiers but one (tiertest.TierIndependent): a count.
				if strings.HasPrefix(s.reason, tierIndependentReason) {
					once++
					onceReason = s.reason
					continue
				}
				if parent, _, ok := strings.Cut(s.test, "/"); ok {
					if subtests[parent] == 0 {
						parents = append(parents, parent)
					}
					subtests[parent]++
					continue
				}
				lines = append(lines, fmt.Sprintf("%s%s %s %s %s skipped: %s", bullet, name, run.tier, run.binary, s.test, orDash(s.reason)))
			}
			if once > 0 {
				lines = append(lines, fmt.Sprintf("%s%s %s %s %d tests skipped: %s", bullet, name, run.tier, run.binary, once, onceReason))
			}
			if len(parents) > 0 {
				var counts []string
				for _, p := range parents {
					counts = append(counts, fmt.Sprintf("%s %d", p, subtests[p]))
				}
				lines = append(lines, fmt.Sprintf("%s%s %s %s subtests skipped: %s", bullet, name, run.tier, run.binary, strings.Join(counts, ", ")))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}

// tierIndependentReason starts the skip reason of internal/tiertest's
// TierIndependent (vmtest does not import the project's test helpers).
const tierIndependentReason = "tier-independent:"

func upper(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToUpper(s)
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
