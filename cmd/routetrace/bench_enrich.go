package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/routetrace/routetrace/enrich"
)

// enrichResult is what enrichment cost and found in the bench's enriched
// mode, summed over its rounds.
type enrichResult struct {
	Events     uint64  `json:"events"`
	NsPerEvent float64 `json:"ns_per_event"` // sampled: one event in 64 is timed
	ProcHits   uint64  `json:"process_hits"`
	ProcMisses uint64  `json:"process_misses"`
	LinkHits   uint64  `json:"link_hits"`
	LinkMisses uint64  `json:"link_misses"`
	// Deletions whose actor came with its command line, and without.
	Named   uint64 `json:"named"`
	Unnamed uint64 `json:"unnamed"`
	Pods    int    `json:"pods"` // pods in the enricher's cache

	sampledNs, sampled uint64
}

func (b *benchNetns) newEnricher() (*enrich.Enricher, error) {
	opts := enrich.Options{Netns: []string{b.name}, Logger: slog.Default()}
	if b.synthPods > 0 {
		opts.Sources = []enrich.Source{enrich.SyntheticPods(b.synthPods)}
	}
	enr, err := enrich.New(opts)
	if err != nil {
		return nil, fmt.Errorf("starting enrichment (--enrich=false benches without it): %w", err)
	}
	if b.synthPods > 0 {
		enr.WaitForPods()
	}
	return enr, nil
}

func (r *enrichResult) add(e *enrich.Enricher, id *identity) {
	s := e.Stats()
	r.Events += s.Events.Load()
	r.ProcHits += s.ProcHits.Load()
	r.ProcMisses += s.ProcMisses.Load()
	r.LinkHits += s.LinkHits.Load()
	r.LinkMisses += s.LinkMisses.Load()
	r.sampledNs += s.SampledNs.Load()
	r.sampled += s.Sampled.Load()
	if r.sampled > 0 {
		r.NsPerEvent = float64(r.sampledNs) / float64(r.sampled)
	}
	r.Named += id.named.Load()
	r.Unnamed += id.unnamed.Load()
	r.Pods = max(r.Pods, e.Pods())
}

func rate(hits, misses uint64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return 100 * float64(hits) / float64(hits+misses)
}

func printEnrichResult(w io.Writer, r *enrichResult) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "enrichment: %.0f ns per event (sampled), %d events; process cache %.2f%% hits (%d misses), "+
		"link cache %.2f%% hits; %d pods cached\n",
		r.NsPerEvent, r.Events, rate(r.ProcHits, r.ProcMisses), r.ProcMisses, rate(r.LinkHits, r.LinkMisses), r.Pods)
	fmt.Fprintf(w, "  %d of %d deletions named with their command line\n", r.Named, r.Named+r.Unnamed)
}
