package event

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fullEvent sets every field the codec carries to a value that is not its
// zero, so a field the codec forgets fails the round trip.
func fullEvent() *Event {
	pod := &Pod{Name: "calico-node-x7k2p", Namespace: "kube-system", UID: "5e1c0c7e-0000-4000-8000-000000000001",
		Labels: map[string]string{"k8s-app": "calico-node", "a": ""}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("fd00::7")}}
	ev := &Event{
		Time: time.Date(2026, 11, 27, 3, 4, 5, 123456789, time.UTC), Op: OpDelete, Object: ObjectRoute, Family: FamilyInet,
		Origin: OriginKernel, Attach: AttachTracepoint, Path: PathNotification,
		Dst: netip.MustParsePrefix("10.244.1.0/24"), Src: netip.MustParsePrefix("10.0.0.0/8"), Gateway: netip.MustParseAddr("10.0.0.1"),
		Table: 254, Protocol: 4, Scope: 253, Type: 1, TOS: 8, Priority: 1024, Oif: 7, NexthopID: 99, Multipath: true,
		FwMark: 0x40000, FwMask: 0xffff0000, Action: 1, Goto: 3, Errno: 3, Count: 9, Netns: 4026531840, Portid: 1, Seq: 1700000000,
		Victim: Victim{Link: &Link{Name: "cali1234", Kind: "veth", Master: "br0", CNI: "calico"}, Pod: pod, Pods: 1},
	}
	ev.Dev.Set("cali1234")
	ev.IifName.Set("eth0")
	ev.OifName.Set("wg0")
	ev.Actor = Actor{Pid: 101, Tgid: 100, PPid: 1, UID: 998, CgroupID: 1234567, Netns: 4026531840, Cookie: 77 << 16,
		Process: &Process{Exe: "/usr/lib/systemd/systemd-networkd", Cmdline: []string{"/usr/lib/systemd/systemd-networkd", ""},
			Cgroup: "/system.slice/systemd-networkd.service", CgroupHierarchy: "cgroup2", Unit: "systemd-networkd.service",
			ContainerID: "abc", Runtime: "containerd", PodUID: "uid", QoS: "besteffort", EnrichError: "cri: no such container",
			Container: &Container{ID: "abc", Name: "calico-node", Image: "calico/node:v3", Pod: pod}}}
	ev.Actor.Comm.Set("systemd-network")
	ev.Actor.PComm.Set("systemd")
	ev.Cause = Cause{Valid: true, Object: ObjectAddr, Op: OpDelete, Ifindex: 7, Prefix: netip.MustParsePrefix("fd00::1/64"),
		Actor: Actor{Pid: 5, Tgid: 5, Kernel: true}}
	ev.Cause.Actor.Comm.Set("kworker/0:1")
	ev.Enforcement = Enforcement{Verdict: VerdictRepaired, Rule: "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)",
		Reason: "backing off 8s", Missing: 1234567 * time.Nanosecond}
	return ev
}

func TestCodecRoundTrip(t *testing.T) {
	unjudged := fullEvent()
	unjudged.Enforcement = Enforcement{}
	for name, ev := range map[string]*Event{"full": fullEvent(), "unjudged": unjudged, "zero": {Time: time.Unix(0, 0).UTC()}} {
		t.Run(name, func(t *testing.T) {
			b := AppendBinary(nil, ev)
			var got Event
			if err := DecodeBinary(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, ev) {
				t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, *ev)
			}
			if b2 := AppendBinary(nil, &got); !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs")
			}
			// The Encoder's remembered process gives the same bytes, for
			// the same process and after another one.
			var enc Encoder
			for i, e := range []*Event{ev, ev, &got, ev} {
				if b2 := enc.Append(nil, e); !bytes.Equal(b, b2) {
					t.Fatalf("Encoder, event %d: bytes differ from AppendBinary's", i)
				}
			}
			other := *ev
			other.Actor.Process = &Process{Exe: "/bin/other"}
			if bytes.Equal(enc.Append(nil, &other), b) && ev.Actor.Process != nil {
				t.Fatal("the Encoder reused the last process's bytes for another process")
			}
		})
	}
}

func TestCodecRefuses(t *testing.T) {
	b := AppendBinary(nil, fullEvent())
	var ev Event
	for i := range len(b) {
		if err := DecodeBinary(b[:i], &ev); err == nil {
			t.Fatalf("a prefix of %d of %d bytes decoded", i, len(b))
		}
	}
	if err := DecodeBinary(append(b, 0), &ev); err == nil {
		t.Fatal("a trailing byte was accepted")
	}
	// A name with a NUL inside decodes to a name that encodes
	// differently; the fuzzer found it, and the decoder refuses it.
	named := &Event{}
	copy(named.Actor.Comm[:], "qzx")
	nul := AppendBinary(nil, named)
	at := bytes.Index(nul, []byte("\x03qzx"))
	if at < 0 {
		t.Fatal("the comm is not in the encoding as length and bytes")
	}
	nul[at+2] = 0
	if err := DecodeBinary(nul, &ev); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("a comm holding a NUL: %v", err)
	}
	bad := append([]byte{}, b...)
	bad[0] = 3
	if err := DecodeBinary(bad, &ev); err == nil || !bytes.Contains([]byte(err.Error()), []byte("version")) {
		t.Fatalf("version 3: %v", err)
	}
	// A judged event is version 2; the same event without a verdict is
	// version 1, readable by binaries from before policies.
	if b[0] != codecVersionEnforced {
		t.Fatalf("a judged event is encoded as version %d", b[0])
	}
	plain := fullEvent()
	plain.Enforcement = Enforcement{}
	if v := AppendBinary(nil, plain)[0]; v != codecVersion {
		t.Fatalf("an unjudged event is encoded as version %d", v)
	}
	// Version 1 bytes with version 2's byte: the enforcement part is
	// missing, and the decoder says so rather than invent one.
	v1 := AppendBinary(nil, plain)
	v1[0] = codecVersionEnforced
	if err := DecodeBinary(v1, &ev); err == nil {
		t.Fatal("version 2 without its enforcement part decoded")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(AppendBinary(nil, fullEvent()))
	f.Add(AppendBinary(nil, &Event{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev Event
		if err := DecodeBinary(b, &ev); err != nil {
			return
		}
		// Whatever decodes must encode to something that decodes to the
		// same event: the journal re-reads what history prints.
		var again Event
		if err := DecodeBinary(AppendBinary(nil, &ev), &again); err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		if !reflect.DeepEqual(&ev, &again) {
			t.Fatalf("re-encoded event differs:\n%+v\n%+v", ev, again)
		}
	})
}

func BenchmarkAppendBinary(b *testing.B) {
	ev := fullEvent()
	buf := AppendBinary(nil, ev)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendBinary(buf[:0], ev)
	}
}

func BenchmarkEncoderSameProcess(b *testing.B) {
	ev := fullEvent()
	var enc Encoder
	buf := enc.Append(nil, ev)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.Append(buf[:0], ev)
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	buf := AppendBinary(nil, fullEvent())
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var ev Event
	for b.Loop() {
		if err := DecodeBinary(buf, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
