package main

import (
	"encoding/json"
	"io"

	"github.com/routetrace/routetrace/tracer"
)

// probeJSON is `routetrace probe --output json`: what the table says, for
// programs. vmtest collects it from every kernel it boots and builds the
// README's kernel table from it (which tier each hook got there, and why a
// better one was refused), so the table cannot drift from what the probe
// really found.
type probeJSON struct {
	Kernel   string          `json:"kernel"`
	Arch     string          `json:"arch"`
	CanTrace bool            `json:"can_trace"`
	Hooks    []probeHookJSON `json:"hooks"`
	// Capture is tier 3's capture with --capture auto; CaptureRefused
	// says why the socket capture was not available ("" when it was).
	Capture        string `json:"capture"`
	CaptureRefused string `json:"capture_refused,omitempty"`
	// Enforce maps each enforce mode to "" (available) or why not.
	Enforce map[string]string `json:"enforce"`
}

type probeHookJSON struct {
	Fn        string `json:"fn"`
	What      string `json:"what"`
	Essential bool   `json:"essential"`
	// Tier is fentry, kprobe, tracepoint (an essential hook that tier 3
	// covers) or "" (an optional hook nothing covers here).
	Tier    string             `json:"tier"`
	Refused []probeRefusalJSON `json:"refused,omitempty"`
}

type probeRefusalJSON struct {
	Tier   string `json:"tier"`
	Reason string `json:"reason"`
}

func writeProbeJSON(w io.Writer, r *tracer.Report) error {
	out := probeJSON{
		Kernel:   r.Kernel,
		Arch:     r.Arch,
		CanTrace: r.CanTrace(),
		Capture:  r.Capture(),
		Enforce:  map[string]string{"audit": "", "block": "", "repair": ""},
	}
	if r.SocketCapture != nil {
		out.CaptureRefused = shortErr(r.SocketCapture)
	}
	for _, h := range r.Hooks {
		hj := probeHookJSON{Fn: h.Fn, What: h.What, Essential: h.Essential, Tier: hookTier(h)}
		for _, rf := range h.Refused {
			hj.Refused = append(hj.Refused, probeRefusalJSON{Tier: rf.Tier.String(), Reason: shortErr(rf.Err)})
		}
		out.Hooks = append(out.Hooks, hj)
	}
	if err := blockSupported(); err != nil {
		out.Enforce["block"] = shortErr(err)
	}
	if err := repairSupported(r); err != nil {
		out.Enforce["repair"] = err.Error()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
