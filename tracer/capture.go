package tracer

import (
	"fmt"
	"log/slog"
	"slices"
)

// Tier 3's captures of rtnetlink requests and acks (Options.Capture).
const (
	CaptureAuto     = "auto"
	CaptureSocket   = "socket"
	CaptureSyscalls = "syscalls"
)

func checkCapture(mode string) error {
	switch mode {
	case "", CaptureAuto, CaptureSocket, CaptureSyscalls:
		return nil
	}
	return fmt.Errorf("unknown capture %q (want auto, socket or syscalls)", mode)
}

// attachCapture attaches tier 3's capture: the socket capture unless told
// otherwise, the syscall tracepoints where the kernel refuses it (tp_btf
// needs kernel BTF and BTF-typed tracepoints, 5.5 and later) or when asked
// for. Whether the socket capture works is learnt by attaching it, never
// from the kernel's version. The choice, and why, goes to the log.
func attachCapture(obj *object, mode string, ioctl bool, log *slog.Logger) (*attached, string, error) {
	if mode == "" {
		mode = CaptureAuto
	}
	var refused error
	if mode != CaptureSyscalls {
		progs := socketProgs
		if ioctl {
			progs = slices.Concat(ioctlProgs, socketProgs)
		}
		a, err := attachAll(obj, progs)
		if err == nil {
			log.Info("tier 3: socket capture (tp_btf consume_skb, skb_copy_datagram_iovec): no tax on other syscalls",
				"ioctl_attribution", ioctl)
			return a, CaptureSocket, nil
		}
		refused = explainLoadError(err)
		if mode == CaptureSocket {
			return nil, "", fmt.Errorf("--capture=socket: attaching the socket capture: %w", refused)
		}
	}
	a, err := attachAll(obj, slices.Concat(ioctlProgs, syscallProgs))
	if err != nil {
		return nil, "", fmt.Errorf("attaching the syscall tracepoints (tier 3): %w", explainLoadError(err))
	}
	if refused != nil {
		log.Warn("tier 3: the kernel refused the socket capture, capturing at the syscall tracepoints "+
			"(every syscall on the node takes the slow path)", "refused", refused)
	} else {
		log.Info("tier 3: syscall capture, as asked (every syscall on the node takes the slow path)")
	}
	return a, CaptureSyscalls, nil
}
