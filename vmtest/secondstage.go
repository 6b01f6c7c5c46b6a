package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

//go:embed secondstage.sh
var secondStageInit []byte

// networkdImage is the incident's root filesystem for the harness's
// architecture. A foreign architecture's debootstrap finishes in a guest of
// that architecture, booted with e's kernel (secondStage).
func (h *harness) networkdImage(ctx context.Context, e kernelEntry) (string, error) {
	r := networkdRecipe
	r.Arch = h.arch.name
	var second func(string) error
	if !h.arch.native() {
		second = func(stage string) error { return h.secondStage(ctx, e, stage) }
	}
	return rootfsImage(h.cache, r, networkdFiles(h.arch), second)
}

// unsafeIOConf is the dpkg setting, relative to the tree, that the second
// stage runs with.
const unsafeIOConf = "etc/dpkg/dpkg.cfg.d/routetrace-second-stage-unsafe-io"

// secondStage runs `debootstrap --second-stage` on the tree in stage inside
// a guest, and replaces stage with the finished tree. The alternative,
// qemu-user through binfmt_misc, would register an interpreter for the
// whole host.
func (h *harness) secondStage(ctx context.Context, e kernelEntry, stage string) error {
	a := h.arch
	pkg, err := resolveKernel(e, h.cache)
	if err != nil {
		return err
	}
	k, err := fetchKernel(pkg, a, h.cache)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(h.cache.path("rootfs"), ".second-stage-")
	if err != nil {
		return fmt.Errorf("staging second stage: %w", err)
	}
	defer os.RemoveAll(work)
	size, err := dirSize(stage)
	if err != nil {
		return fmt.Errorf("sizing first stage: %w", err)
	}
	// The packages in var/cache/apt/archives unpack to about three times
	// their size; the images are sparse, so generous costs nothing.
	mib := size/(1<<20)*4 + 1024
	// dpkg syncs every file it unpacks; the tree is thrown away if the
	// guest fails, so the syncs buy nothing. The finished tree is
	// installed without the setting.
	if err := os.MkdirAll(filepath.Join(stage, filepath.Dir(unsafeIOConf)), 0o755); err != nil {
		return fmt.Errorf("staging dpkg's unsafe-io setting: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stage, unsafeIOConf), []byte("force-unsafe-io\n"), 0o644); err != nil {
		return fmt.Errorf("staging dpkg's unsafe-io setting: %w", err)
	}
	disk := filepath.Join(work, "stage.ext4")
	if _, err := runTool("", "mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", stage, disk, fmt.Sprintf("%dM", mib)); err != nil {
		return fmt.Errorf("building first-stage image: %w", err)
	}
	out := filepath.Join(work, "tree.tar")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		return fmt.Errorf("creating tar disk: %w", err)
	}
	if err := os.Truncate(out, mib<<20); err != nil {
		return fmt.Errorf("creating tar disk: %w", err)
	}

	im := image{}
	im.chardev("dev/console", 5, 1)
	if err := addELF(im, "bin/busybox", h.user.busybox, a, h.user.root); err != nil {
		return err
	}
	im.symlink("bin/sh", "busybox")
	im.data("init", secondStageInit, 0o755)
	if err := addModules(im, k, h.cache, "secondstage", []string{"virtio_pci", "virtio_blk", "ext4"}); err != nil {
		return err
	}
	initrd := filepath.Join(work, "initrd")
	if err := im.writeFile(initrd); err != nil {
		return err
	}
	accel := h.accel
	if accel == "" {
		accel = "tcg"
	}
	v := vm{
		arch: a, qemu: h.qemu, accel: accel, cpus: h.opts.cpus, memory: h.opts.memory,
		kernel: k.image, initrd: initrd, cmdline: kernelCmdline(a, ""),
		extra: []string{
			// Scratch images the host reads back after the guest
			// exits: the guest's flushes need not reach the host's
			// disk (cache=unsafe ignores them).
			"-drive", "file=" + disk + ",format=raw,if=virtio,cache=unsafe",
			"-drive", "file=" + out + ",format=raw,if=virtio,cache=unsafe",
		},
	}
	logPath := filepath.Join(h.runDir, "second-stage-"+a.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating second-stage log: %w", err)
	}
	defer logf.Close()
	// A guest like any other: it takes a guest slot, or it would run a
	// third TCG guest beside make vm's two. Before any other: the
	// architecture's whole incident run waits for it (on a fresh machine,
	// where no guest was timed yet, it waited 37 minutes for a slot).
	slots := h.slots()
	slots.first = true
	slot, err := slots.acquire(ctx, "second-stage-"+a.name)
	if err != nil {
		return err
	}
	defer slot.Close()
	start := time.Now()
	slog.Info("booting second-stage guest", "kernel", k.version, "arch", a.name, "log", logPath)
	vctx, cancel := context.WithTimeoutCause(ctx, 60*time.Minute, fmt.Errorf("second stage timed out after 60m"))
	defer cancel()
	done, failure := false, ""
	err = v.run(vctx, func(line string) {
		fmt.Fprintln(logf, line)
		if i := strings.Index(line, "SECONDSTAGE-"); i >= 0 {
			m := line[i:]
			done = done || strings.HasPrefix(m, "SECONDSTAGE-DONE")
			if strings.HasPrefix(m, "SECONDSTAGE-ERROR") && failure == "" {
				failure = m
			}
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w (log: %s)", err, logPath)
	case failure != "":
		return fmt.Errorf("%s (log: %s)", failure, logPath)
	case !done:
		return fmt.Errorf("guest stopped before the second stage finished (log: %s)", logPath)
	}
	slog.Info("second stage finished", "arch", a.name, "took", time.Since(start).Round(time.Second))
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("replacing first stage: %w", err)
	}
	if err := os.Mkdir(stage, 0o755); err != nil {
		return fmt.Errorf("replacing first stage: %w", err)
	}
	if _, err := runTool("", "tar", "-x", "-p", "--numeric-owner", "-f", out, "-C", stage); err != nil {
		return fmt.Errorf("unpacking the finished tree: %w", err)
	}
	if err := os.Remove(filepath.Join(stage, unsafeIOConf)); err != nil {
		return fmt.Errorf("removing dpkg's unsafe-io setting from the finished tree: %w", err)
	}
	return nil
}
