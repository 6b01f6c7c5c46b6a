package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// vm is one QEMU invocation.
type vm struct {
	arch    *arch
	qemu    string // path of the emulator
	accel   string // kvm or tcg
	cpus    int
	memory  int // MiB
	kernel  string
	initrd  string
	cmdline string
	extra   []string // further QEMU arguments, such as a -drive
}

// kernelCmdline enables BPF LSM (lsm= must end with bpf; Debian's default
// list leaves it out) and sends everything to the serial console, which is
// the only channel between guest and host. panic=-1 turns a panic into a
// reboot, which -no-reboot turns into a QEMU exit instead of a hang.
func kernelCmdline(a *arch, extra string) string {
	s := "console=" + a.console + " panic=-1 quiet lsm=lockdown,capability,landlock,yama,apparmor,bpf"
	if extra != "" {
		s += " " + extra
	}
	return s
}

func (v *vm) args() []string {
	args := []string{
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
		"-serial", "stdio",
		"-accel", v.accel,
		"-smp", strconv.Itoa(v.cpus),
		"-m", strconv.Itoa(v.memory),
		"-kernel", v.kernel,
		"-initrd", v.initrd,
		"-append", v.cmdline,
	}
	args = append(args, v.arch.machine...)
	args = append(args, v.extra...)
	switch {
	case v.accel == "kvm":
		args = append(args, "-cpu", "host")
	case v.arch.tcgCPU != "":
		args = append(args, "-cpu", v.arch.tcgCPU)
	}
	return args
}

// run boots the VM and calls onLine for every console line until QEMU
// exits or ctx ends, in which case QEMU is killed.
func (v *vm) run(ctx context.Context, onLine func(string)) error {
	cmd := exec.CommandContext(ctx, v.qemu, v.args()...)
	// QEMU's own errors arrive on stderr; merge them so they land in the log
	// next to the console output that explains them.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting qemu: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second
	slog.Debug("starting qemu", "cmd", v.qemu+" "+strings.Join(v.args(), " "))
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("starting %s: %w", v.qemu, err)
	}
	w.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		onLine(strings.TrimRight(sc.Text(), "\r"))
	}
	r.Close()
	err = cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("qemu killed: %w", context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("running qemu: %w", err)
	}
	return nil
}

var errKVMUnusable = errors.New("kvm unusable")

// probeKVM boots a guest whose init powers off at once. /dev/kvm existing
// proves nothing: on some hosts (nested virtualization) KVM guests crash or
// hang, so only a real boot decides, bounded by a short timeout.
func probeKVM(ctx context.Context, base vm, probeInitrd string) error {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return fmt.Errorf("%w: %v", errKVMUnusable, err)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", errKVMUnusable, err)
	}
	f.Close()
	base.accel, base.initrd = "kvm", probeInitrd
	ctx, cancel := context.WithTimeoutCause(ctx, 30*time.Second, errors.New("kvm probe timed out"))
	defer cancel()
	ok := false
	var tail []string
	err = base.run(ctx, func(l string) {
		tail = append(tail, l)
		if len(tail) > 5 {
			tail = tail[1:]
		}
		ok = ok || strings.Contains(l, "VMTEST-PROBE-OK")
	})
	if err == nil && !ok {
		err = errors.New("guest exited before init ran")
	}
	if err != nil {
		return fmt.Errorf("%w: %v; last output: %q", errKVMUnusable, err, tail)
	}
	return nil
}

// probeImage is a busybox-only initramfs whose init reports and powers off.
func probeImage(a *arch, u *userland, dst string) error {
	im := image{}
	im.chardev("dev/console", 5, 1)
	if err := addELF(im, "bin/busybox", u.busybox, a, u.root); err != nil {
		return err
	}
	im.symlink("bin/sh", "busybox")
	im.data("init", []byte("#!/bin/sh\n/bin/busybox echo VMTEST-PROBE-OK\n/bin/busybox poweroff -f\n"), 0o755)
	return im.writeFile(dst)
}
