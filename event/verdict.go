package event

import "time"

// Verdict is what an enforcement policy said of a change (trace --policy,
// enforce). The zero Verdict is "no policy looked at it, or the change is
// not protected".
type Verdict uint8

const (
	VerdictNone Verdict = iota
	// VerdictWouldBlock: the change touched protected state and its actor
	// is not allowed; it was let through (audit, or a repair that did not
	// happen: see Enforcement.Reason).
	VerdictWouldBlock
	// VerdictBlocked: the kernel refused the request (BPF LSM, EPERM).
	VerdictBlocked
	// VerdictRepaired: the change happened and routetrace put the state
	// back (Enforcement.Missing says for how long it was gone).
	VerdictRepaired
)

var verdictNames = [...]string{"", "would-block", "blocked", "repaired"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// ParseVerdict is the inverse of Verdict.String, for filters.
func ParseVerdict(s string) (Verdict, bool) { return parseName(verdictNames[:], s, VerdictNone) }

// Enforcement is the policy's decision on one change. Rule and Reason
// point at strings the policy owns (or that repair made once): copying an
// Event copies no bytes.
type Enforcement struct {
	Verdict Verdict
	// Rule names the protect entry that matched, as the policy file says
	// it, with its line: "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)".
	Rule string
	// Reason says more when there is more to say: a request refused
	// because it could not be read whole ("fail closed: ..."), a repair
	// that failed or is backing off.
	Reason string
	// Missing is how long repaired state was gone: from the deletion's
	// kernel time to the repair's acknowledgement.
	Missing time.Duration
}
