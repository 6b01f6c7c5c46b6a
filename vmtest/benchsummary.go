package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// benchResult is the part of `routetrace bench --output json` that the
// --bench summary shows (cmd/routetrace/bench.go and bench_kernel.go).
type benchResult struct {
	N          int     `json:"n"`
	Rounds     int     `json:"rounds"`
	Attach     string  `json:"attach"`
	RatioBatch float64 `json:"ratio_batch"`
	RatioFlush float64 `json:"ratio_flush"`
	Expected   uint64  `json:"expected"`
	Reported   uint64  `json:"reported"`
	Lost       uint64  `json:"lost"`
	Kernel     *struct {
		Pinned bool `json:"pinned"`
		Phases []struct {
			Name            string  `json:"name"`
			NoTracerNsPer   float64 `json:"no_tracer_ns_per_change"`
			BPFNsPer        float64 `json:"bpf_ns_per_change"`
			Ratio           float64 `json:"bpf_ratio"`
			TracedNsPer     float64 `json:"traced_ns_per_change"`
			Share           float64 `json:"bpf_share"`
			RecursionMisses uint64  `json:"recursion_misses"`
			Programs        []struct {
				Name     string  `json:"name"`
				Runs     uint64  `json:"runs"`
				NsPerRun float64 `json:"ns_per_run"`
			} `json:"programs"`
		} `json:"phases"`
	} `json:"kernel_cost"`
}

// benchRow is one kernel and tier of a --bench run.
type benchRow struct {
	kernel, tier string
	res          *benchResult
	problem      string // why there is no result
}

func benchRows(results []*kernelResult, tiers []string) []benchRow {
	var rows []benchRow
	for _, r := range results {
		name, _ := kernelName(r)
		for _, tier := range tiers {
			row := benchRow{kernel: name, tier: tier}
			var run *testRun
			for _, x := range r.runs {
				if x.tier == tier && x.binary == benchName {
					run = x
				}
			}
			switch {
			case run == nil:
				row.problem = "no result (see the console log)"
			case run.status != "pass":
				row.problem = fmt.Sprintf("routetrace bench exited with status %s (see the console log)", run.exit)
			default:
				var res benchResult
				if err := json.Unmarshal([]byte(run.bench), &res); err != nil {
					row.problem = fmt.Sprintf("unreadable result: %v", err)
				} else {
					row.res = &res
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// phasePair formats one value of both removal methods, "batch / flush".
func (row benchRow) phasePair(f func(ns, bpf, ratio, traced, share float64) string) string {
	k := row.res.Kernel
	if k == nil || len(k.Phases) != 2 {
		return "-"
	}
	var s []string
	for _, p := range k.Phases {
		s = append(s, f(p.NoTracerNsPer, p.BPFNsPer, p.Ratio, p.TracedNsPer, p.Share))
	}
	return strings.Join(s, " / ")
}

func (row benchRow) cells() []string {
	if row.res == nil {
		return []string{row.problem, "", "", "", "", "", ""}
	}
	r := row.res
	return []string{
		fmt.Sprintf("%.2f / %.2f", r.RatioBatch, r.RatioFlush),
		row.phasePair(func(ns, _, _, _, _ float64) string { return fmt.Sprintf("%.0f", ns) }),
		row.phasePair(func(_, bpf, _, _, _ float64) string { return fmt.Sprintf("%.0f", bpf) }),
		row.phasePair(func(_, _, ratio, _, _ float64) string { return fmt.Sprintf("%.3f", ratio) }),
		row.phasePair(func(_, _, _, traced, _ float64) string { return fmt.Sprintf("%.0f", traced) }),
		row.phasePair(func(_, _, _, _, share float64) string { return fmt.Sprintf("%.3f", share) }),
		fmt.Sprintf("%d of %d, %d lost", r.Reported, r.Expected, r.Lost),
	}
}

var benchHeader = []string{"wall ratio", "no tracer ns/route", "BPF ns/route", "BPF ratio", "stats round ns/route", "BPF share", "deletions reported"}

// writeBenchSummary prints the --bench table for the terminal.
func writeBenchSummary(w io.Writer, results []*kernelResult, tiers []string) {
	fmt.Fprintln(w, "\nvmtest bench (each pair: ip -batch del / ip route flush; BPF ratio = BPF ns per route / no-tracer ns per route;")
	fmt.Fprintln(w, "BPF share = BPF ns per route / wall ns per route of the round the statistics were taken in)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "KERNEL\tTIER\t%s\n", strings.ToUpper(strings.Join(benchHeader, "\t")))
	rows := benchRows(results, tiers)
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", row.kernel, row.tier, strings.Join(row.cells(), "\t"))
	}
	tw.Flush()
	writeBenchPrograms(w, rows, "  ")
}

// writeBenchMarkdown writes the same table for the README.
func writeBenchMarkdown(w io.Writer, results []*kernelResult, tiers []string) {
	fmt.Fprintf(w, "| Kernel | tier | %s |\n", strings.Join(benchHeader, " | "))
	fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("---|", len(benchHeader)))
	rows := benchRows(results, tiers)
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %s | %s |\n", row.kernel, row.tier, strings.Join(row.cells(), " | "))
	}
	writeBenchPrograms(w, rows, "- ")
}

// writeBenchPrograms lists each program's runs and ns per run below a table.
func writeBenchPrograms(w io.Writer, rows []benchRow, bullet string) {
	var lines []string
	for _, row := range rows {
		if row.res == nil || row.res.Kernel == nil {
			continue
		}
		for _, p := range row.res.Kernel.Phases {
			var progs []string
			for _, pr := range p.Programs {
				progs = append(progs, fmt.Sprintf("%s %d × %.0f ns", pr.Name, pr.Runs, pr.NsPerRun))
			}
			lines = append(lines, fmt.Sprintf("%s%s %s, %s: %s; %d recursion misses", bullet, row.kernel, row.tier, p.Name,
				strings.Join(progs, ", "), p.RecursionMisses))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}
