// Package enforce is block mode: BPF LSM programs (bpf/enforce.bpf.c) that
// refuse, with EPERM, rtnetlink and route-ioctl requests that would remove
// or replace protected routes, rules and nexthops, or take down the links
// and addresses they hang on, unless the requester is allowed.
//
// # Use
//
// Load the object (adopting pinned maps), give Maps the dynamic facts
// (SetNamespaces, SetProtectedInterfaces, ProtectRoutes, SetAllowedCgroups,
// SetAllowedExes), Apply the Compile'd policy, then Attach. Run reads the
// verdicts; rule ids index Policy.Protect, and Run names them with the
// []string the caller passes. Until the first Apply the setters only stage
// their facts, so that an adopted policy stays whole until the new one
// replaces it in one flip.
//
// # What is judged
//
//   - rtnetlink (lsm/netlink_send, NETLINK_ROUTE sockets of enforced
//     namespaces): every message of the skb, and every attribute of each
//     route, rule, nexthop, link and address request, streamed from the
//     skb; no message or attribute count limits it. RTA_MULTIPATH's
//     nexthops are walked for protected interfaces.
//   - route ioctls (lsm/file_ioctl; lsm/file_ioctl_compat where the kernel
//     has it): SIOCADDRT/SIOCDELRT on any socket (packet sockets hand
//     them to inet). 32-bit tasks' ioctls are refused unparsed.
//   - Operations count as package policy says: deletes always, replaces
//     with Operations.Replace, adds only inside a protected prefix and
//     longer than it with Operations.MoreSpecific.
//   - Causes of kernel-internal removals are refused too, since the
//     removals themselves cannot be: RTM_DELLINK and a NEWLINK/SETLINK that
//     clears IFF_UP of a protected interface, and RTM_DELADDR on one (the
//     kernel would flush the interface's routes). A link request naming
//     its link only by name, in a namespace with protected interfaces, is
//     refused (BPF cannot resolve names). Moving a link to another
//     namespace or renaming it is not judged.
//
// # Fail closed
//
// A request that could touch protected state and cannot be judged whole is
// refused; Verdict.Reason / Enforcement.Reason says why (ReasonText): a
// bad nlmsg_len (of a route/rule/nexthop/link/address message; the kernel
// ignores bytes after a bad length of any other), a message shorter than
// its family header, a bad attribute length, a malformed rtnexthop, a
// failed read, a loop bound (bpf_loop's 8M; not reachable by a real skb),
// a rule delete without FRA_PRIORITY while a rule selector of its family
// exists, a link by name, a non-linear skb, a 32-bit route ioctl.
//
// # Maps
//
// Two complete policies, sets 0 and 1, in the same maps: every key holds
// its set, enf_current names the set in force. Apply writes the other set
// (config last), flips enf_current with one write, waits an RCU grace
// period (an update of an array of maps), and clears the old set. The dynamic facts change in
// the set in force in the order that is never more permissive than the old
// or the new facts (protection added before removed, allowances removed
// before added). See bpf/include/policy.h for each map.
//
// # Pinning and the agent's death
//
// Attach pins links and maps under PinDir. Killed (or closed without
// Release), the agent leaves the programs attached and the policy in
// force: enforcement goes on, unchanged, with nothing reading verdicts
// (the ring fills, Stats.Lost counts). A new agent's Load adopts the
// pinned maps, its Attach attaches its own links before renaming their
// pins over the old ones. Release (or ReleasePinned, without loading)
// removes the pins and detaches: the break glass.
package enforce

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/internal/bpffeat"
)

// PinDir is where Attach pins the enforcer's links and maps.
const PinDir = "/sys/fs/bpf/routetrace/enforce"

type programs struct {
	NetlinkSend *ebpf.Program `ebpf:"enforce_netlink_send"`
	FileIoctl   *ebpf.Program `ebpf:"enforce_file_ioctl"`
}

// The maps that are not policy: pinned too, so that a new agent reads the
// verdicts the old programs write until their links are replaced.
type outMaps struct {
	Events *ebpf.Map `ebpf:"enf_events"`
	Stats  *ebpf.Map `ebpf:"enf_stats"`
}

type objects struct {
	programs
	policyMaps
	outMaps
}

// Enforcer is the loaded enforcer.
type Enforcer struct {
	Maps   *Maps
	objs   objects
	compat *ebpf.Program // lsm/file_ioctl_compat, where the kernel has the hook
	links  map[string]link.Link
	pinDir string
	log    *slog.Logger
}

// Options configures Load.
type Options struct {
	PinDir string // "" is PinDir
	Log    *slog.Logger
}

func (o *Options) defaults() {
	if o.PinDir == "" {
		o.PinDir = PinDir
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func (o *objects) maps() map[string]*ebpf.Map {
	m := o.policyMaps.all()
	m["enf_events"] = o.Events
	m["enf_stats"] = o.Stats
	return m
}

func (o *objects) close() {
	for _, c := range []interface{ Close() error }{o.NetlinkSend, o.FileIoctl} {
		if c != nil {
			_ = c.Close()
		}
	}
	for _, m := range o.maps() {
		if m != nil {
			_ = m.Close()
		}
	}
}

// Load loads the enforcer's programs and maps, adopting the maps pinned in
// PinDir by an earlier agent if there are any (the policy in force stays
// in force). Nothing is attached yet.
func Load(opts Options) (*Enforcer, error) {
	opts.defaults()
	if err := needBPFLoop(); err != nil {
		return nil, err
	}
	spec, err := loadEnforce()
	if err != nil {
		return nil, fmt.Errorf("reading the enforce object: %w", err)
	}
	repl := map[string]*ebpf.Map{}
	for name := range (&objects{}).maps() { // the maps Attach pins
		m, err := ebpf.LoadPinnedMap(filepath.Join(opts.PinDir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			closeAll(repl)
			return nil, fmt.Errorf("adopting pinned map %s: %w", name, err)
		}
		repl[name] = m
	}
	e := &Enforcer{links: map[string]link.Link{}, pinDir: opts.PinDir, log: opts.Log}
	err = spec.LoadAndAssign(&e.objs, &ebpf.CollectionOptions{MapReplacements: repl})
	closeAll(repl) // LoadAndAssign took its own references
	if err != nil {
		return nil, fmt.Errorf("loading the enforcer (pinned maps adopted: %d; if they are from another version, run release first): %w", len(repl), explain(err))
	}
	if len(repl) > 0 {
		opts.Log.Info("adopted the pinned enforcer maps", "dir", opts.PinDir, "maps", len(repl))
	}
	if hasCompatHook() {
		var c struct {
			P *ebpf.Program `ebpf:"enforce_file_ioctl_compat"`
		}
		if err := spec.LoadAndAssign(&c, &ebpf.CollectionOptions{MapReplacements: e.objs.maps()}); err != nil {
			e.objs.close()
			return nil, fmt.Errorf("loading the compat ioctl program: %w", explain(err))
		}
		e.compat = c.P
	}
	e.Maps, err = newMaps(&e.objs.policyMaps, opts.Log)
	if err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}

// hasCompatHook says whether 32-bit tasks' ioctls have an LSM hook of
// their own (security_file_ioctl_compat, 6.8 on): then the enforcer must
// attach there too, or 32-bit route ioctls would pass unjudged.
func hasCompatHook() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	_, err = spec.AnyTypeByName("bpf_lsm_file_ioctl_compat")
	return err == nil
}

func closeAll(m map[string]*ebpf.Map) {
	for _, x := range m {
		_ = x.Close()
	}
}

// explain names the usual causes of a refused load.
func explain(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("LSM program refused: EPERM (not root, or the kernel refuses BPF LSM programs): %w", err)
	}
	return err
}

// Attach attaches the programs and pins links and maps under the pin
// directory. Links pinned by an earlier agent are replaced only after the
// new ones are attached, so there is no moment without enforcement.
func (e *Enforcer) Attach() error {
	if err := bpffsMounted(e.pinDir); err != nil {
		return err
	}
	if err := os.MkdirAll(e.pinDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", e.pinDir, err)
	}
	for name, m := range e.objs.maps() {
		p := filepath.Join(e.pinDir, name)
		if m.IsPinned() {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			continue // adopted: the pin is ours already
		}
		if err := m.Pin(p); err != nil {
			return fmt.Errorf("pinning map %s: %w", name, err)
		}
	}
	progs := map[string]*ebpf.Program{"link_netlink_send": e.objs.NetlinkSend, "link_file_ioctl": e.objs.FileIoctl}
	if e.compat != nil {
		progs["link_file_ioctl_compat"] = e.compat
	}
	for name, prog := range progs {
		l, err := link.AttachLSM(link.LSMOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attaching %s: %w", name, explain(err))
		}
		e.links[name] = l
		// pin beside the old link, then rename over it: the old link's
		// last reference goes only when the new one is in place
		tmp := filepath.Join(e.pinDir, name+"_new") // bpffs refuses names with dots
		_ = os.Remove(tmp)
		if err := l.Pin(tmp); err != nil {
			return fmt.Errorf("pinning %s: %w", name, err)
		}
		if err := os.Rename(tmp, filepath.Join(e.pinDir, name)); err != nil {
			return fmt.Errorf("replacing the pinned %s: %w", name, err)
		}
	}
	return nil
}

// bpffsMounted checks that dir's filesystem (or its nearest existing
// parent's) is a BPF filesystem.
func bpffsMounted(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("%s is not on a BPF filesystem: mount -t bpf bpf /sys/fs/bpf", d)
			}
			return nil
		}
		if d == "/" {
			return fmt.Errorf("no BPF filesystem for %s: mount -t bpf bpf /sys/fs/bpf", dir)
		}
	}
}

// Close closes the agent's handles. Pinned links and maps stay:
// enforcement goes on with the policy in force.
func (e *Enforcer) Close() error {
	for _, l := range e.links {
		_ = l.Close()
	}
	if e.compat != nil {
		_ = e.compat.Close()
	}
	if e.Maps != nil {
		e.Maps.close()
	}
	e.objs.close()
	return nil
}

// Release ends enforcement (break glass): removes every pin under the pin
// directory and closes the links, which detaches the programs. It also
// works on pins an earlier agent left, with e loaded from them.
func (e *Enforcer) Release() error {
	return errors.Join(ReleasePinned(e.pinDir), e.Close())
}

// ReleasePinned removes the pinned enforcer in dir ("" is PinDir) without
// loading anything: once the pins are gone and no agent holds the links,
// the programs are detached.
func ReleasePinned(dir string) error {
	if dir == "" {
		dir = PinDir
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	var errs []error
	for _, ent := range ents {
		if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
			errs = append(errs, fmt.Errorf("unpinning %s: %w", ent.Name(), err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Probe says whether block mode works here: nil when BPF LSM is active
// and the enforcer's programs load and attach (a real attach: some
// kernels list bpf among the LSMs and still refuse the programs). The
// result is cached.
func Probe() error {
	probeOnce.Do(func() { probeErr = probe() })
	return probeErr
}

func probe() error {
	raw, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return fmt.Errorf("reading the active LSMs (is securityfs mounted on /sys/kernel/security?): %w", err)
	}
	cur := strings.TrimSpace(string(bytes.TrimRight(raw, "\x00")))
	if !lsmActive(cur) {
		return fmt.Errorf("BPF LSM not active: boot with lsm=%s,bpf (current: %s)", cur, cur)
	}
	if err := needBPFLoop(); err != nil {
		return err
	}
	spec, err := loadEnforce()
	if err != nil {
		return fmt.Errorf("reading the enforce object: %w", err)
	}
	var objs objects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return probeError("loading", err)
	}
	defer objs.close()
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"lsm/netlink_send", objs.NetlinkSend}, {"lsm/file_ioctl", objs.FileIoctl}} {
		l, err := link.AttachLSM(link.LSMOptions{Program: p.prog})
		if errors.Is(err, link.ErrNotSupported) {
			return &NoTrampolineError{Prog: p.name, Err: err}
		}
		if err != nil {
			return probeError("attaching", err)
		}
		_ = l.Close()
	}
	return nil
}

// needBPFLoop refuses the enforcer by name where it cannot load: it walks
// requests, attributes and nexthops with bpf_loop. A probe that could not
// run (no privileges) is left to the load, which says why.
func needBPFLoop() error {
	if err := bpffeat.BPFLoop(); errors.Is(err, bpffeat.ErrNoBPFLoop) {
		return fmt.Errorf("enforce: not offered: %w", err)
	}
	return nil
}

// ErrNoTrampoline matches a NoTrampolineError.
var ErrNoTrampoline = errors.New("no BPF trampoline for LSM programs")

// NoTrampolineError is an LSM program that loaded but whose attach the
// kernel refused with ENOTSUPP (524): BPF LSM programs run from a BPF
// trampoline on the LSM hook's function, made with ftrace direct calls,
// which some architectures lack in some kernels (arm64 before 6.4). The
// tracer's fentry tier is refused there for the same reason. Found by
// attaching, never by looking at the architecture or version.
//
// It has no Unwrap, so that probe's line, which keeps the innermost cause,
// shows this explanation; Is still matches the attach error.
type NoTrampolineError struct {
	Prog string // the program whose attach failed
	Err  error
}

func (e *NoTrampolineError) Error() string {
	return "LSM program refused: the kernel cannot attach BPF LSM programs (no BPF trampoline on this architecture: " +
		"attaching " + e.Prog + " failed with ENOTSUPP (524), ftrace direct calls are missing); enforce mode auto repairs instead"
}

func (e *NoTrampolineError) Is(target error) bool {
	return target == ErrNoTrampoline || errors.Is(e.Err, target)
}

func lsmActive(list string) bool {
	for _, l := range strings.Split(list, ",") {
		if l == "bpf" {
			return true
		}
	}
	return false
}

func probeError(what string, err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fmt.Errorf("LSM program refused: %s (%s the enforcer): %w", unix.ErrnoName(errno), what, err)
	}
	return fmt.Errorf("LSM program refused (%s the enforcer): %w", what, explain(err))
}
