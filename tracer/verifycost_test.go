package tracer

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/routetrace/routetrace/internal/testnet"
)

// TestVerifierCost bounds what the verifier checks for the programs that
// carry the rtnetlink parser. Its attribute switch, inlined into a loop of
// 32 attributes, was verified once per iteration and path: 200,550
// instructions per rule or nexthop hook, 181,291 for the bare parser, and
// 9.5 s per hook under arm64 TCG. As a global function it is checked once.
// Counts are not times: they depend on the kernel's verifier, not the load.
func TestVerifierCost(t *testing.T) {
	testnet.RequireRoot(t)
	cache := btf.NewCache()
	for _, c := range []struct {
		object, program string
		limit           uint32
	}{
		{"parsertest", "parse_rtnl", 20_000},        // 6,755 on 6.18
		{"fib", "kretprobe_fib_nl_newrule", 60_000}, // 26,014 on 6.18
		{"fib", "kretprobe_rtm_new_nexthop", 60_000},
		{"nlcapture", "rt_sendmsg", 140_000}, // 70,493 on 6.18; 245,029 before
	} {
		t.Run(c.program, func(t *testing.T) {
			load := map[string]func() (*ebpf.CollectionSpec, error){
				"parsertest": loadParsertest, "fib": loadFib, "nlcapture": loadNlcapture,
			}[c.object]
			spec, err := load()
			if err != nil {
				t.Fatal(err)
			}
			obj, err := openObject(c.object, spec, 0, nil, cache)
			if err != nil {
				t.Fatal(err)
			}
			defer obj.close()
			prog, err := obj.program(c.program)
			if err != nil {
				t.Skipf("this kernel does not load %s (its tier's tests say why): %v", c.program, err)
			}
			defer prog.Close()
			info, err := prog.Info()
			if err != nil {
				t.Fatal(err)
			}
			n, ok := info.VerifiedInstructions()
			if !ok {
				t.Skip("the kernel does not report verified instructions (Linux 5.16)")
			}
			t.Logf("%s: %d instructions verified", c.program, n)
			if n > c.limit {
				t.Errorf("%s: the verifier checked %d instructions, want at most %d: is the parser's attribute switch inlined into its loop again?", c.program, n, c.limit)
			}
		})
	}
}
