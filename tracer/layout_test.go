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
	type object struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
		typ  reflect.Type // the object's own generated type
	}
	// Every record layout the ring buffer carries: the C struct, the Go
	// type the reader copies into, and each object's generated type.
	for _, rec := range []struct {
		cName   string
		goType  reflect.Type
		goSize  int
		objects []object
	}{
		{"rt_event", reflect.TypeFor[record](), recordSize, []object{
			{"fib", loadFib, reflect.TypeFor[fibRtEvent]()},
			{"nlcapture", loadNlcapture, reflect.TypeFor[nlcaptureRtEvent]()},
			{"parsertest", loadParsertest, reflect.TypeFor[parsertestRtEvent]()},
			// The arm64 Go files build only on arm64; their objects' BTF must
			// still match the one layout.
			{"fib arm64", loadArm64("fib_arm64_bpfel.o"), reflect.TypeFor[fibRtEvent]()},
			{"nlcapture arm64", loadArm64("nlcapture_arm64_bpfel.o"), reflect.TypeFor[nlcaptureRtEvent]()},
			{"parsertest arm64", loadArm64("parsertest_arm64_bpfel.o"), reflect.TypeFor[parsertestRtEvent]()},
		}},
		{"rt_proc", reflect.TypeFor[procRecord](), procSize, []object{
			{"fib", loadFib, reflect.TypeFor[fibRtProc]()},
			{"nlcapture", loadNlcapture, reflect.TypeFor[nlcaptureRtProc]()},
			{"nlorigin", loadNlorigin, reflect.TypeFor[nloriginRtProc]()},
			{"fib arm64", loadArm64("fib_arm64_bpfel.o"), reflect.TypeFor[fibRtProc]()},
			{"nlcapture arm64", loadArm64("nlcapture_arm64_bpfel.o"), reflect.TypeFor[nlcaptureRtProc]()},
			{"nlorigin arm64", loadArm64("nlorigin_arm64_bpfel.o"), reflect.TypeFor[nloriginRtProc]()},
		}},
	} {
		want := goLayout(rec.goType)
		if len(want) == 0 {
			t.Fatalf("%s has no fields", rec.goType)
		}
		var first []layoutField
		for _, o := range rec.objects {
			t.Run(rec.cName+"/"+o.name, func(t *testing.T) {
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
				if err := spec.Types.TypeByName(rec.cName, &s); err != nil {
					t.Fatalf("finding struct %s in BTF: %v", rec.cName, err)
				}
				if uint64(s.Size) != uint64(rec.goType.Size()) || uint64(s.Size) != uint64(o.typ.Size()) || int(s.Size) != rec.goSize {
					t.Errorf("BTF %s is %d bytes; %s %d, %s %d, size constant %d",
						rec.cName, s.Size, rec.goType, rec.goType.Size(), o.typ.Name(), o.typ.Size(), rec.goSize)
				}
				got := btfLayout(t, s)
				compareLayouts(t, "BTF "+rec.cName, got, rec.goType.String(), want)
				compareLayouts(t, "BTF "+rec.cName, got, o.typ.Name(), goLayout(o.typ))
				if first == nil {
					first = got
				} else {
					compareLayouts(t, "BTF "+rec.cName, got, rec.objects[0].name+"'s BTF "+rec.cName, first)
				}
			})
		}
	}
	// The reader tells the two records apart by the kind byte: it must be
	// at one offset in both (the C static_asserts it too).
	if a, b := reflect.TypeFor[record]().Field(0), reflect.TypeFor[procRecord]().Field(0); a.Name != "_" || b.Name != "_" {
		t.Fatalf("generated types no longer start with structs.HostLayout")
	}
	ek, _ := reflect.TypeFor[record]().FieldByName("Kind")
	pk, _ := reflect.TypeFor[procRecord]().FieldByName("Kind")
	if ek.Offset != pk.Offset || int(ek.Offset) != kindOffset {
		t.Errorf("kind at %d in rt_event, %d in rt_proc, kindOffset %d", ek.Offset, pk.Offset, kindOffset)
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
