package tracer

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// originProg is nlorigin.bpf.c's one program.
const originProg = "rt_notify_origin"

// attachOrigins loads nlorigin.bpf.c against the shared maps (nil: its
// own, for probe) and attaches its program; the caller owns both results.
func attachOrigins(self uint32, shared map[string]*ebpf.Map, cache *btf.Cache) (*object, *attached, error) {
	spec, err := loadNlorigin()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the nlorigin BPF object: %w", err)
	}
	obj, err := openObject("nlorigin", spec, self, shared, cache)
	if err != nil {
		return nil, nil, explainLoadError(err)
	}
	a, err := attachAll(obj, []string{originProg})
	if err != nil {
		obj.close()
		return nil, nil, explainLoadError(err)
	}
	return obj, a, nil
}

// startOrigins attaches nlorigin.bpf.c's program, which names the ioctl
// behind each notification with no requester that reaches one of our
// listeners (see tier3/origin.go), and keeps its map of listener sockets
// in step with the listeners. It needs the sk_data_ready BTF tracepoint
// (kernel 6.6+): where the kernel refuses it, ioctl-made changes are still
// reported from their notifications, named only by the ioctl syscall
// tracepoints (the syscall capture, or --ioctl) and only for routes.
func (t *Tracer) startOrigins(self uint32, fib *object, cache *btf.Cache) {
	obj, a, err := attachOrigins(self, sharedMaps(fib), cache)
	if err != nil {
		t.log.Info("tier 3: ioctls that change links and addresses cannot be named: the kernel refused the program on the sk_data_ready BTF tracepoint (6.6+ has it); such changes are reported as the kernel's", "err", err)
		return
	}
	t.objs = append(t.objs, obj)
	t.attached = append(t.attached, a)
	t.origins = true
	listeners := obj.maps["listeners"]
	t.listeners.OnSocket(func(netns, portid uint32, open bool) {
		key := nloriginListenerKey{Netns: netns, Portid: portid}
		var err error
		if open {
			err = listeners.Put(key, uint8(1))
		} else {
			err = listeners.Delete(key)
		}
		if err != nil {
			t.log.Warn("updating the map of listener sockets: ioctls in this namespace may be reported as the kernel's", "netns", netns, "err", fmt.Errorf("nlorigin listeners: %w", err))
		}
	})
}

// NamesIoctls reports whether tier 3 names the ioctl behind a change with
// no netlink requester (a link set down by ifconfig).
func (t *Tracer) NamesIoctls() bool { return t.origins }

// wakeRing makes the ring buffer's reader read now, idle or not, and
// returns the flush's number: the reader sends a kindRingFlushed record
// carrying it once everything written before is read.
func (t *Tracer) wakeRing() uint64 {
	n := t.flushAsked.Add(1)
	if err := t.reader.Flush(); err != nil {
		t.log.Debug("flushing the ring buffer reader", "err", err)
	}
	return n
}
