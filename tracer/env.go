package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Capabilities routetrace needs, by number (linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

var capNames = map[int]string{capNetAdmin: "CAP_NET_ADMIN", capSysAdmin: "CAP_SYS_ADMIN", capPerfmon: "CAP_PERFMON", capBPF: "CAP_BPF"}

// effectiveCaps reads the effective capability set of this process.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// MissingCaps names the capabilities tracing needs and this process lacks.
func MissingCaps() []string {
	caps, err := effectiveCaps()
	if err != nil {
		return []string{"(unknown: " + err.Error() + ")"}
	}
	has := func(c int) bool { return caps&(1<<c) != 0 }
	var missing []string
	if !has(capSysAdmin) {
		for _, c := range []int{capBPF, capPerfmon} {
			if !has(c) {
				missing = append(missing, capNames[c])
			}
		}
	}
	if !has(capNetAdmin) {
		missing = append(missing, capNames[capNetAdmin])
	}
	return missing
}

// CanEnterNetns reports whether this process holds CAP_SYS_ADMIN, which
// setns(2) needs: tier 3 and enrichment open each network namespace's
// rtnetlink listener from inside it, so without it only routetrace's own
// namespace is heard.
func CanEnterNetns() bool {
	caps, err := effectiveCaps()
	return err == nil && caps&(1<<capSysAdmin) != 0
}

func checkPrivileges() error {
	missing := MissingCaps()
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing %s: run routetrace as root (sudo routetrace ...) or grant them with "+
		"`sudo setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin+ep $(command -v routetrace)`",
		strings.Join(missing, ", "))
}

// Filesystem magic numbers (linux/magic.h).
const (
	bpffsMagic      = 0xcafe4a11
	tracefsMagic    = 0x74726163
	securityfsMagic = 0x73636673
)

// Mount is a pseudo filesystem routetrace uses.
type Mount struct {
	Path, FS string
	magic    int64
}

var mounts = []Mount{
	{"/sys/fs/bpf", "bpf", bpffsMagic},
	{"/sys/kernel/tracing", "tracefs", tracefsMagic},
	{"/sys/kernel/security", "securityfs", securityfsMagic},
}

// Mounted reports whether m is mounted.
func (m Mount) Mounted() bool {
	var st unix.Statfs_t
	return unix.Statfs(m.Path, &st) == nil && int64(st.Type) == m.magic
}

// ensureMounts mounts bpffs, tracefs and securityfs where missing: tracepoint
// attach needs tracefs, and a minimal host or container may lack them.
func ensureMounts(log *slog.Logger) {
	for _, m := range mounts {
		if m.Mounted() {
			continue
		}
		if err := unix.Mount(m.FS, m.Path, m.FS, 0, ""); err != nil {
			log.Warn("pseudo filesystem not mounted and mounting failed", "fs", m.FS, "path", m.Path,
				"err", err, "fix", fmt.Sprintf("mount -t %s %s %s", m.FS, m.FS, m.Path))
			continue
		}
		log.Info("mounted", "fs", m.FS, "path", m.Path)
	}
}

// memlockGuess is what cilium/ebpf appends to any EPERM from a load.
// routetrace raises RLIMIT_MEMLOCK before loading anything, so on its
// errors the guess only misleads (the cause is lockdown, a sandbox or a
// missing capability).
const memlockGuess = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// withoutMemlockGuess drops that guess from err's text; errors.Is and As
// still see the original.
type withoutMemlockGuess struct{ error }

func (e withoutMemlockGuess) Error() string {
	return strings.ReplaceAll(e.error.Error(), memlockGuess, "")
}
func (e withoutMemlockGuess) Unwrap() error { return e.error }

// explainLoadError adds what a user can do about common load failures.
func explainLoadError(err error) error {
	if err == nil {
		return nil
	}
	err = withoutMemlockGuess{err}
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("%w\nverifier log:\n%+v", err, ve)
	case errors.Is(err, btf.ErrNotFound):
		return fmt.Errorf("%w: this kernel has no BTF (/sys/kernel/btf/vmlinux); routetrace needs CONFIG_DEBUG_INFO_BTF=y", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: the kernel refused (check capabilities, and lockdown in /sys/kernel/security/lockdown)", err)
	}
	return err
}
