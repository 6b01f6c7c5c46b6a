// Package enforce is block mode: BPF LSM programs (bpf/enforce.bpf.c) that
// refuse, with EPERM, rtnetlink and route-ioctl requests that would remove
// or replace protected routes, rules and nexthops, or take down the links
// and addresses they hang on, unless the requester is allowed.
//
// Load the object, fill its maps (Maps: Apply a Compiled policy, and the
// facts resolved on the node), then Attach: links and maps are pinned
// under PinDir, so enforcement outlives the agent (a killed agent leaves
// the policy in force, unchanged, until a new agent adopts it or Release
// removes it). A new agent's Load adopts the pinned maps; its Attach
// replaces the pinned links only once its own are attached.
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
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
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
	e.Maps, err = newMaps(&e.objs.policyMaps, opts.Log)
	if err != nil {
		e.objs.close()
		return nil, err
	}
	return e, nil
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
	for name, prog := range map[string]*ebpf.Program{"link_netlink_send": e.objs.NetlinkSend, "link_file_ioctl": e.objs.FileIoctl} {
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
	spec, err := loadEnforce()
	if err != nil {
		return fmt.Errorf("reading the enforce object: %w", err)
	}
	var objs objects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return probeError("loading", err)
	}
	defer objs.close()
	for _, p := range []*ebpf.Program{objs.NetlinkSend, objs.FileIoctl} {
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			return probeError("attaching", err)
		}
		_ = l.Close()
	}
	return nil
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
