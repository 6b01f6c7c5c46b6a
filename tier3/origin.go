package tier3

import (
	"encoding/binary"

	"github.com/routetrace/routetrace/event"
)

// Origins: who made the changes that rtnetlink notifies with no requester
// (portid 0). Where the kernel has the sk_data_ready BTF tracepoint, a BPF
// program on routetrace's own listener sockets (bpf/nlorigin.bpf.c) writes
// one ORIGIN record per such notification, from inside the change: the
// task that made it, when it was in an ioctl (route(8), ifconfig). The
// record carries a hash of the notification's first bytes;
// the listener computes the same hash on the message it reads, and the
// joiner pairs the two exactly, whichever is read first.

// originHashBytes is RT_ORIGIN_HASH_BYTES in nlorigin.bpf.c.
const originHashBytes = 128

// OriginHash is the hash nlorigin.bpf.c computes over a notification:
// FNV-1a over the native-endian 32-bit words of its first bytes (at most
// originHashBytes, never past its nlmsg_len).
func OriginHash(msg []byte) uint32 {
	n := len(msg)
	if n >= 4 {
		if l := int(binary.NativeEndian.Uint32(msg)); l < n {
			n = l
		}
	}
	n = min(n, originHashBytes) &^ 3
	h := uint32(2166136261)
	for i := 0; i < n; i += 4 {
		h ^= binary.NativeEndian.Uint32(msg[i:])
		h *= 16777619
	}
	return h
}

// originTTL bounds how long an origin waits for its notification (and the
// reverse is orphanWait): the two are read within milliseconds of each
// other unless the node is starved.
const (
	originTTLNs = int64(2e9)
	maxOrigins  = 4096
)

type origin struct {
	netns, hash uint32
	actor       event.Actor
	seen        int64
}

// Origin handles an ORIGIN record: a notification with no requester was
// made by the task in ev, inside an ioctl (nlorigin.bpf.c records no other:
// in a kernel thread or an interrupt the kernel is the actor, which is what
// the joiner assumes; and a side effect of a netlink request is joined to
// that request). hash is the notification's.
func (j *Joiner) Origin(ev *event.Event, hash uint32, now int64) {
	o := origin{netns: ev.Netns, hash: hash, actor: ev.Actor, seen: now}
	// A trigger read first gets its actor now.
	for i := len(j.triggers) - 1; i >= 0; i-- {
		t := &j.triggers[i]
		if now-t.seen > triggerTTLNs {
			break
		}
		if t.hash == hash && t.ev.Netns == o.netns && t.ev.Portid == 0 && t.ev.Origin != event.OriginIoctl {
			t.ev.Actor, t.ev.Origin = o.actor, event.OriginIoctl
			return
		}
	}
	j.origins = appendBounded(j.origins, o, maxOrigins)
}

// takeOrigin finds and removes the origin of a notification with no
// requester.
func (j *Joiner) takeOrigin(netns, hash uint32, now int64) (origin, bool) {
	for i := range j.origins {
		o := j.origins[i]
		if o.netns == netns && o.hash == hash && now-o.seen <= originTTLNs {
			j.origins = append(j.origins[:i], j.origins[i+1:]...)
			return o, true
		}
	}
	return origin{}, false
}

// expireOrigins drops origins whose notification never came (a listener
// that closed, a message the listener could not decode).
func (j *Joiner) expireOrigins(now int64) {
	n := 0
	for n < len(j.origins) && now-j.origins[n].seen > originTTLNs {
		n++
	}
	if n > 0 {
		j.origins = append(j.origins[:0], j.origins[n:]...)
	}
}
