package tracer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The decoder copies ring buffer bytes into a Go struct (readRecord), so the
// Go layout must be the C one. bpf2go generates the Go types from BTF, but
// from one object each, at generate time: this checks every committed object
// against every Go type, as tetragon's alignchecker does.

// goName is bpf2go's name for a C member: snake_case to CamelCase.
func goName(c string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(c, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

type layoutField struct {
	name         string
	offset, size uint64
}

// goLayout lists a struct's named fields in order.
func goLayout(t reflect.Type) []layoutField {
	var out []layoutField
	for f := range t.Fields() {
		if f.Name == "_" {
			continue // structs.HostLayout
		}
		out = append(out, layoutField{f.Name, uint64(f.Offset), uint64(f.Type.Size())})
	}
	return out
}

// btfLayout lists rt_event's members as bpf2go names them.
func btfLayout(tb testing.TB, s *btf.Struct) []layoutField {
	tb.Helper()
	var out []layoutField
	for _, m := range s.Members {
		if m.BitfieldSize != 0 {
			tb.Errorf("rt_event.%s is a bitfield: bpf2go cannot lay it out", m.Name)
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			tb.Fatalf("size of rt_event.%s: %v", m.Name, err)
		}
		out = append(out, layoutField{goName(m.Name), uint64(m.Offset.Bytes()), uint64(size)})
	}
	return out
}

func TestRecordLayoutMatchesBTF(t *testing.T) {
	loadArm64 := func(name string) func() (*ebpf.CollectionSpec, error) {
		return func() (*ebpf.CollectionSpec, error) { return ebpf.LoadCollectionSpec(name) }
	}
	objects := []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
		typ  reflect.Type // the object's own generated type
	}{
		{"fib", loadFib, reflect.TypeFor[fibRtEvent]()},
		{"nlcapture", loadNlcapture, reflect.TypeFor[nlcaptureRtEvent]()},
		{"parsertest", loadParsertest, reflect.TypeFor[parsertestRtEvent]()},
		// The arm64 Go files build only on arm64; their objects' BTF must
		// still match the one layout.
		{"fib arm64", loadArm64("fib_arm64_bpfel.o"), reflect.TypeFor[fibRtEvent]()},
		{"nlcapture arm64", loadArm64("nlcapture_arm64_bpfel.o"), reflect.TypeFor[nlcaptureRtEvent]()},
		{"parsertest arm64", loadArm64("parsertest_arm64_bpfel.o"), reflect.TypeFor[parsertestRtEvent]()},
	}
	recordType := reflect.TypeFor[record]()
	want := goLayout(recordType)
	if len(want) == 0 {
		t.Fatal("record has no fields")
	}

	var first []layoutField
	for _, o := range objects {
		t.Run(o.name, func(t *testing.T) {
			spec, err := o.load()
			if errors.Is(err, fs.ErrNotExist) && os.Getenv("ROUTETRACE_VMTEST") != "" {
				// The other architecture's object is read from the source
				// tree, which a VM does not have; the host run checks it.
				t.Skipf("loading the spec: %v (no source tree in the VM)", err)
			}
			if err != nil {
				t.Fatalf("loading the spec: %v", err)
			}
			var s *btf.Struct
			if err := spec.Types.TypeByName("rt_event", &s); err != nil {
				t.Fatalf("finding struct rt_event in BTF: %v", err)
			}
			if uint64(s.Size) != uint64(recordType.Size()) || uint64(s.Size) != uint64(o.typ.Size()) || int(s.Size) != recordSize {
				t.Errorf("BTF rt_event is %d bytes; record %d, %s %d, recordSize %d",
					s.Size, recordType.Size(), o.typ.Name(), o.typ.Size(), recordSize)
			}
			got := btfLayout(t, s)
			compareLayouts(t, "BTF rt_event", got, "record", want)
			compareLayouts(t, "BTF rt_event", got, o.typ.Name(), goLayout(o.typ))
			if first == nil {
				first = got
			} else {
				compareLayouts(t, "BTF rt_event", got, objects[0].name+"'s BTF rt_event", first)
			}
		})
	}
}

// compareLayouts checks two field lists position by position: name, offset
// and size. A renamed or reordered field fails here even if the sizes add up.
func compareLayouts(tb testing.TB, aName string, a []layoutField, bName string, b []layoutField) {
	tb.Helper()
	if len(a) != len(b) {
		tb.Errorf("%s has %d fields, %s %d", aName, len(a), bName, len(b))
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			tb.Errorf("field %d: %s has %s, %s has %s", i, aName, a[i], bName, b[i])
		}
	}
}

func (f layoutField) String() string {
	return fmt.Sprintf("%s at %d (%d bytes)", f.name, f.offset, f.size)
}
