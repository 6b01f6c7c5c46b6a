package rtnl

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/routetrace/routetrace/event"
)

// seeds are the table messages, alone and concatenated into one buffer.
func seeds() [][]byte {
	var out [][]byte
	var batch []byte
	for _, tc := range decodeCases() {
		out = append(out, tc.msg)
		batch = append(batch, tc.msg...)
	}
	return append(out, batch, []byte{})
}

// FuzzNext walks a receive buffer as a reader does and decodes every
// message it finds.
func FuzzNext(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		rest := buf
		for len(rest) > 0 {
			before := rest
			h, msg, next, err := Next(rest)
			if err != nil {
				if msg != nil || next != nil {
					t.Fatalf("Next error %v with msg %d, rest %d bytes", err, len(msg), len(next))
				}
				return
			}
			if len(msg) != int(h.Len) || len(msg) < HeaderLen {
				t.Fatalf("msg is %d bytes, h.Len %d", len(msg), h.Len)
			}
			if &msg[0] != &before[0] {
				t.Fatal("msg does not start the buffer")
			}
			if !isSuffix(buf, next) || len(next) >= len(before) {
				t.Fatalf("rest (%d bytes) is not a shorter suffix of the buffer (%d bytes)", len(next), len(before))
			}
			if pad := len(before) - len(next) - len(msg); pad < 0 || pad > 3 {
				t.Fatalf("%d bytes of padding between messages", pad)
			}
			checkDecode(t, h, msg)
			rest = next
		}
	})
}

// FuzzDecode decodes one message under a header that may disagree with it.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds() {
		if len(s) >= HeaderLen {
			f.Add(s[4:6], s)
		}
	}
	f.Fuzz(func(t *testing.T, typ []byte, msg []byte) {
		if len(msg) < HeaderLen {
			var ev event.Event
			if err := Decode(Header{}, msg, &ev); err == nil {
				t.Fatalf("Decode of %d bytes succeeded", len(msg))
			}
			return
		}
		h, _, _, _ := Next(msg)
		if len(typ) >= 2 {
			// Try any message type on the same bytes.
			h.Type = uint16(typ[0]) | uint16(typ[1])<<8
		}
		// Cap the slice so that any read past it would panic.
		checkDecode(t, h, msg[:len(msg):len(msg)])
	})
}

func checkDecode(t *testing.T, h Header, msg []byte) {
	orig := bytes.Clone(msg)
	var a, b event.Event
	errA := Decode(h, msg, &a)
	errB := Decode(h, msg, &b)
	if errA != errB || a != b {
		t.Fatalf("Decode is not deterministic: %v/%v, %+v/%+v", errA, errB, a, b)
	}
	if !bytes.Equal(orig, msg) {
		t.Fatal("Decode modified its input")
	}
	if errA != nil {
		return
	}
	if a.Object == event.ObjectUnknown || (a.Op != event.OpAdd && a.Op != event.OpReplace && a.Op != event.OpDelete) {
		t.Fatalf("Decode succeeded without object or op: %+v", a)
	}
	if a.Seq != h.Seq || a.Portid != h.Portid {
		t.Fatalf("seq/portid %d/%d, header %d/%d", a.Seq, a.Portid, h.Seq, h.Portid)
	}
	for _, p := range []*event.Name{&a.Dev, &a.IifName, &a.OifName} {
		if p[15] != 0 {
			t.Fatalf("name %q is not NUL-terminated", p[:])
		}
	}
}

func isSuffix(buf, rest []byte) bool {
	if len(rest) > len(buf) {
		return false
	}
	if len(rest) == 0 {
		return true
	}
	return unsafe.SliceData(rest) == unsafe.SliceData(buf[len(buf)-len(rest):])
}
