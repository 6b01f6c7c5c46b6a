package tracer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/bpffeat"
)

// Report is what `routetrace probe` shows: the environment, and per hook
// the tier it gets here and why better tiers were refused.
type Report struct {
	Kernel      string
	Arch        string
	BTF         error // nil: kernel BTF is available
	RingBuf     error // nil: ring buffers are supported
	Mounts      []MountStatus
	LSMs        string // /sys/kernel/security/lsm
	Lockdown    string
	MissingCaps []string
	Hooks       []HookStatus
	Tracepoints error // nil: tier 3's syscall tracepoints attach
	// SocketCapture: nil when tier 3's socket capture attaches (the
	// capture "auto" chooses then); else why not.
	SocketCapture error
	// IoctlOrigins: nil when the program naming the ioctl behind a change
	// with no netlink requester attaches (sk_data_ready, origin.go).
	IoctlOrigins error
}

// Capture is the capture tier 3 would use with --capture auto.
func (r *Report) Capture() string {
	if r.SocketCapture == nil {
		return CaptureSocket
	}
	return CaptureSyscalls
}

// MountStatus is one pseudo filesystem and whether it is mounted.
type MountStatus struct {
	Mount
	Mounted bool
}

// BPFLSM reports whether the BPF LSM is active (needed by enforce mode).
func (r *Report) BPFLSM() bool {
	for _, l := range strings.Split(r.LSMs, ",") {
		if l == "bpf" {
			return true
		}
	}
	return false
}

// CanTrace reports whether tracing can run: every essential hook has a
// tier, or tier 3 can stand in for those that have none.
func (r *Report) CanTrace() bool {
	if len(r.MissingCaps) > 0 || r.RingBuf != nil {
		return false
	}
	for _, h := range r.Hooks {
		if h.Essential && h.Tier == event.AttachUnknown && r.Tracepoints != nil && r.SocketCapture != nil {
			return false
		}
	}
	return true
}

// Probe loads and attaches every hook with every tier, best first, and
// detaches again; it changes nothing else.
func Probe(log *slog.Logger) *Report {
	r := &Report{MissingCaps: MissingCaps()}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		r.Kernel = unix.ByteSliceToString(uts.Release[:])
		r.Arch = unix.ByteSliceToString(uts.Machine[:])
	}
	_, r.BTF = btf.LoadKernelSpec()
	ensureMounts(log)
	for _, m := range mounts {
		r.Mounts = append(r.Mounts, MountStatus{m, m.Mounted()})
	}
	r.LSMs = readTrimmed("/sys/kernel/security/lsm")
	r.Lockdown = readTrimmed("/sys/kernel/security/lockdown")
	if len(r.MissingCaps) > 0 {
		err := fmt.Errorf("missing %s", strings.Join(r.MissingCaps, ", "))
		r.RingBuf, r.Tracepoints, r.SocketCapture = err, err, err
		return r
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("raising RLIMIT_MEMLOCK", "err", err)
	}
	r.RingBuf = features.HaveMapType(ebpf.RingBuf)

	cache := btf.NewCache()
	self := uint32(os.Getpid())
	spec, err := loadFib()
	if err != nil {
		r.Tracepoints = err
		return r
	}
	fib, err := openObject("fib", spec, self, nil, cache)
	if err != nil {
		r.Tracepoints = explainLoadError(err)
		return r
	}
	defer fib.close()
	tiers, _ := tiersFor("auto")
	for _, h := range hooks() {
		st, a := attachHook(fib, h, tiers)
		if a != nil {
			a.close()
		}
		r.Hooks = append(r.Hooks, st)
	}

	r.IoctlOrigins = probeOrigins(self, cache)
	if err := bpffeat.BPFLoop(); errors.Is(err, bpffeat.ErrNoBPFLoop) {
		r.Tracepoints, r.SocketCapture = err, err
		return r
	}
	ncSpec, err := loadNlcapture()
	if err != nil {
		r.Tracepoints, r.SocketCapture = err, err
		return r
	}
	nc, err := openObject("nlcapture", ncSpec, self, nil, cache)
	if err != nil {
		r.Tracepoints, r.SocketCapture = explainLoadError(err), explainLoadError(err)
		return r
	}
	defer nc.close()
	try := func(names []string) error {
		a, err := attachAll(nc, names)
		if err != nil {
			return explainLoadError(err)
		}
		a.close()
		return nil
	}
	r.SocketCapture = try(socketProgs)
	r.Tracepoints = try(slices.Concat(ioctlProgs, syscallProgs))
	return r
}

// probeOrigins attaches nlorigin's program once, as startOrigins does.
func probeOrigins(self uint32, cache *btf.Cache) error {
	obj, a, err := attachOrigins(self, nil, cache)
	if err != nil {
		return err
	}
	a.close()
	obj.close()
	return nil
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
