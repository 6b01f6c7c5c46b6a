package tier3

import (
	"encoding/binary"
	"testing"

	"github.com/routetrace/routetrace/event"
)

func ifconfigActor() event.Actor {
	a := event.Actor{Pid: 400, Tgid: 400}
	copy(a.Comm[:], "ifconfig")
	return a
}

// A route notification with no requester, whose ORIGIN record says an
// ioctl made it, is the ioctl's: whichever of the two is read first.
func TestJoinOriginNamesIoctlRoute(t *testing.T) {
	for _, originFirst := range []bool{true, false} {
		jd := newJoined()
		n := notification(0, 0, event.OpDelete, "198.51.100.0/24")
		o := event.Event{Netns: 7, Actor: ifconfigActor()}
		if originFirst {
			jd.j.Origin(&o, 0xabcd, 0)
			jd.j.notification(&n, 0xabcd, 1)
		} else {
			jd.j.notification(&n, 0xabcd, 0)
			jd.j.Origin(&o, 0xabcd, 1)
		}
		// An unrelated notification with no requester stays the kernel's.
		other := notification(0, 0, event.OpDelete, "198.51.101.0/24")
		jd.j.notification(&other, 0x1234, 2)
		jd.j.Expire(2+orphanWaitNs, false)
		if len(jd.out) != 2 {
			t.Fatalf("origin first %v: got %d events, want 2", originFirst, len(jd.out))
		}
		if ev := jd.out[0]; ev.Origin != event.OriginIoctl || ev.Actor.Tgid != 400 || ev.Actor.Kernel || ev.Dst.String() != "198.51.100.0/24" {
			t.Errorf("origin first %v: got %s by %+v, want 198.51.100.0/24 by ioctl of pid 400", originFirst, ev.Origin, ev.Actor)
		}
		if ev := jd.out[1]; ev.Origin != event.OriginKernel || !ev.Actor.Kernel {
			t.Errorf("origin first %v: unrelated removal got %s by %+v, want the kernel", originFirst, ev.Origin, ev.Actor)
		}
		if len(jd.j.origins) != 0 {
			t.Errorf("origin first %v: %d origins left, want 0", originFirst, len(jd.j.origins))
		}
	}
}

// `ifconfig v0 down`: the link's notification has no requester; with its
// ORIGIN record the routes the kernel flushed name ifconfig as the cause's
// actor, whichever came first.
func TestJoinOriginNamesIoctlTrigger(t *testing.T) {
	for _, originFirst := range []bool{true, false} {
		jd := newJoined()
		o := event.Event{Netns: 7, Actor: ifconfigActor()}
		down := event.Event{Op: event.OpAdd, Object: event.ObjectLink, Netns: 7, Oif: 3}
		if originFirst {
			jd.j.Origin(&o, 77, 0)
			jd.j.trigger(&down, 77, 1)
		} else {
			jd.j.trigger(&down, 77, 0)
			jd.j.Origin(&o, 77, 1)
		}
		n := notification(0, 0, event.OpDelete, "10.3.0.0/24")
		jd.j.notification(&n, 5, 2)
		jd.j.Expire(2+orphanWaitNs, false)
		if len(jd.out) != 1 {
			t.Fatalf("origin first %v: got %d events, want 1", originFirst, len(jd.out))
		}
		ev := jd.out[0]
		if !ev.Actor.Kernel || ev.Origin != event.OriginKernel {
			t.Errorf("origin first %v: got %s by %+v, want the kernel's removal", originFirst, ev.Origin, ev.Actor)
		}
		if c := ev.Cause; !c.Valid || c.Object != event.ObjectLink || c.Actor.Tgid != 400 || c.Actor.Comm.String() != "ifconfig" {
			t.Errorf("origin first %v: cause %+v, want link 3 set down by ifconfig[400]", originFirst, c)
		}
	}
}

// Origins whose notification never came are dropped in time, and bounded.
func TestJoinOriginsBounded(t *testing.T) {
	jd := newJoined()
	o := event.Event{Netns: 7, Actor: ifconfigActor()}
	for i := range maxOrigins + 10 {
		jd.j.Origin(&o, uint32(i), 0)
	}
	if len(jd.j.origins) != maxOrigins || jd.j.origins[0].hash != 10 {
		t.Fatalf("%d origins, oldest %d; want %d, oldest 10", len(jd.j.origins), jd.j.origins[0].hash, maxOrigins)
	}
	jd.j.Expire(originTTLNs+1, false)
	if len(jd.j.origins) != 0 {
		t.Errorf("%d origins after their TTL, want 0", len(jd.j.origins))
	}
}

// OriginHash covers the message up to its nlmsg_len and at most 128 bytes,
// in whole words, as nlorigin.bpf.c does.
func TestOriginHashBounds(t *testing.T) {
	msg := make([]byte, 256)
	for i := range msg {
		msg[i] = byte(i)
	}
	binary.NativeEndian.PutUint32(msg, 256)
	h := OriginHash(msg)
	msg[200] ^= 0xff // past 128 bytes: not covered
	if OriginHash(msg) != h {
		t.Error("a byte past 128 changed the hash")
	}
	msg[100] ^= 0xff
	if OriginHash(msg) == h {
		t.Error("a byte within 128 did not change the hash")
	}
	short := append([]byte(nil), msg[:64]...)
	binary.NativeEndian.PutUint32(short, 40) // nlmsg_len 40: bytes 40.. are the next message
	h40 := OriginHash(short)
	short[50] ^= 0xff
	if OriginHash(short) != h40 {
		t.Error("a byte past nlmsg_len changed the hash")
	}
	basis, prime := uint32(2166136261), uint32(16777619)
	if got, want := OriginHash([]byte{4, 0, 0, 0}), (basis^4)*prime; got != want {
		t.Errorf("hash of one word %#x, want %#x", got, want)
	}
}

// The ring buffer reader lags the sockets (woken late, or starved of CPU):
// the ORIGIN record of `ifconfig v0 down`'s notification is read after
// the notification's wait ended. With WaitForRing the orphan waits until
// the ring buffer has been read past its deadline, and is the ioctl's;
// before, it was settled at its deadline as the kernel's own (vmtest's
// TestRemovalsWithoutRequest/link_set_down_by_ioctl failed so on 7.2).
func TestJoinOrphanWaitsForRing(t *testing.T) {
	jd := newJoined()
	jd.j.WaitForRing()
	n := notification(0, 0, event.OpDelete, "198.51.100.0/24")
	jd.j.notification(&n, 0xabcd, 0)
	deadline := orphanWaitNs
	if !jd.j.OrphansDue(deadline) {
		t.Fatal("the orphan is not due at its deadline")
	}
	jd.j.Expire(deadline+1, false) // the ring was not read past the deadline yet
	if len(jd.out) != 0 {
		t.Fatalf("settled before the ring buffer was read: %+v", jd.out[0])
	}
	o := event.Event{Netns: 7, Actor: ifconfigActor()}
	jd.j.Origin(&o, 0xabcd, deadline+2) // the lagging reader's record
	jd.j.RingReadAt(deadline + 2)
	if jd.j.OrphansDue(deadline + 3) {
		t.Error("still due once the ring buffer was read past the deadline")
	}
	jd.j.Expire(deadline+3, false)
	if len(jd.out) != 1 || jd.out[0].Origin != event.OriginIoctl || jd.out[0].Actor.Tgid != 400 {
		t.Fatalf("got %+v; want the removal by ifconfig's ioctl", jd.out)
	}

	// A reader that never catches up holds an orphan back maxRingLag at most.
	jd = newJoined()
	jd.j.WaitForRing()
	jd.j.notification(&n, 0x1234, 0)
	jd.j.Expire(deadline+maxRingLagNs-1, false)
	if len(jd.out) != 0 {
		t.Fatal("settled before maxRingLag with the ring unread")
	}
	jd.j.Expire(deadline+maxRingLagNs, false)
	if len(jd.out) != 1 || !jd.out[0].Actor.Kernel {
		t.Fatalf("got %+v; want the kernel's removal once maxRingLag passed", jd.out)
	}
}
