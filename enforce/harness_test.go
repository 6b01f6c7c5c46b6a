package enforce

import (
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// testObjects is the test-runnable program with the same maps the LSM
// programs use.
type testObjects struct {
	Test *ebpf.Program `ebpf:"enforce_test"`
	In   *ebpf.Map     `ebpf:"enf_test_in"`
	Out  *ebpf.Map     `ebpf:"enf_test_out"`
	policyMaps
	outMaps
}

type harness struct {
	objs testObjects
	maps *Maps
}

const ethHeaderLen = 14 // the test run strips an Ethernet header

func loadHarness(tb testing.TB) *harness {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loading BPF programs")
	}
	// The matcher runs under bpf_loop like the LSM programs: on a kernel
	// without it the object cannot load (5.10 said "number of funcs in
	// func_info doesn't match number of subprogs"), which
	// TestProbeNamesTheCause checks is refused by name.
	if err := needBPFLoop(); err != nil {
		tb.Skipf("%v", err)
	}
	spec, err := loadEnforce()
	if err != nil {
		tb.Fatal(err)
	}
	h := &harness{}
	if err := spec.LoadAndAssign(&h.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			tb.Skipf("loading BPF programs refused: %v", err)
		}
		tb.Fatalf("loading enforce_test: %+v", err)
	}
	tb.Cleanup(func() {
		_ = h.objs.Test.Close()
		_ = h.objs.In.Close()
		_ = h.objs.Out.Close()
		(&objects{policyMaps: h.objs.policyMaps, outMaps: h.objs.outMaps}).close()
	})
	h.maps, err = newMaps(&h.objs.policyMaps, slog.Default())
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// result is what one run decided.
type result struct {
	Refused        bool
	Rule, Reason   uint32
	MsgIndex, Msgs uint32
	Generation     uint32
}

// run judges msgs (one skb's bytes) as sent on a socket of netns.
func (h *harness) run(tb testing.TB, netns uint32, msgs []byte) result {
	tb.Helper()
	if len(msgs) > len(enforceEnfTestInput{}.Data) {
		tb.Fatalf("%d bytes: more than the test input holds", len(msgs))
	}
	in := &enforceEnfTestInput{Len: uint32(len(msgs)), Netns: netns}
	copy(in.Data[:], msgs)
	if err := h.objs.In.Update(uint32(0), in, ebpf.UpdateAny); err != nil {
		tb.Fatalf("writing enf_test_in: %v", err)
	}
	stale := enforceEnfTestResult{Refused: 0xdead, Rule: 0xdead, Reason: 0xdead}
	if err := h.objs.Out.Update(uint32(0), &stale, ebpf.UpdateAny); err != nil {
		tb.Fatal(err)
	}
	code, err := h.objs.Test.Run(&ebpf.RunOptions{Data: make([]byte, ethHeaderLen)})
	if err != nil {
		tb.Fatalf("running enforce_test: %v", err)
	}
	if code != 1 {
		tb.Fatalf("enforce_test returned %d: no input map", code)
	}
	var out enforceEnfTestResult
	if err := h.objs.Out.Lookup(uint32(0), &out); err != nil {
		tb.Fatal(err)
	}
	return result{Refused: out.Refused != 0, Rule: out.Rule, Reason: out.Reason, MsgIndex: out.MsgIndex,
		Msgs: out.Msgs, Generation: out.Generation}
}

func TestLoad(t *testing.T) {
	h := loadHarness(t)
	t.Log(h.run(t, 1, nil))
}
