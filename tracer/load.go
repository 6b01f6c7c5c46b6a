package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// object is one loaded BPF object: its maps, created once, and the
// programs loaded from it one at a time, so that each hook can take the
// attach tier its kernel allows without the others failing with it.
type object struct {
	name  string
	spec  *ebpf.CollectionSpec
	maps  map[string]*ebpf.Map
	cache *btf.Cache
}

// openObject creates the object's maps. Maps named in shared are reused
// instead of created: the ring buffer and its loss counter are one for all
// objects, so there is one stream of records in kernel order.
func openObject(name string, spec *ebpf.CollectionSpec, selfTgid uint32, shared map[string]*ebpf.Map, cache *btf.Cache) (*object, error) {
	spec = spec.Copy()
	if v, ok := spec.Variables["self_tgid"]; ok {
		if err := v.Set(selfTgid); err != nil {
			return nil, fmt.Errorf("setting self_tgid in %s: %w", name, err)
		}
	}
	repl := make(map[string]*ebpf.Map)
	for n, m := range shared {
		if _, ok := spec.Maps[n]; ok {
			repl[n] = m
		}
	}
	mapsOnly := &ebpf.CollectionSpec{Maps: spec.Maps, Variables: spec.Variables, Types: spec.Types, ByteOrder: spec.ByteOrder}
	coll, err := ebpf.NewCollectionWithOptions(mapsOnly, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("creating maps of %s: %w", name, err)
	}
	maps := make(map[string]*ebpf.Map, len(coll.Maps))
	for n := range coll.Maps {
		maps[n] = coll.DetachMap(n)
	}
	coll.Close()
	return &object{name: name, spec: spec, maps: maps, cache: cache}, nil
}

// program loads one program against the object's maps.
func (o *object) program(name string) (*ebpf.Program, error) {
	ps, ok := o.spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("program %s not in object %s", name, o.name)
	}
	one := &ebpf.CollectionSpec{
		Maps:      o.spec.Maps,
		Programs:  map[string]*ebpf.ProgramSpec{name: ps},
		Types:     o.spec.Types,
		ByteOrder: o.spec.ByteOrder,
	}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: o.maps, Cache: o.cache})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, explainLoadError(err))
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

func (o *object) close() {
	for _, m := range o.maps {
		m.Close()
	}
}

// attached is a set of programs and links that live and die together.
type attached struct {
	progs []*ebpf.Program
	links []link.Link
}

// close detaches in the reverse of attach order: entry programs before
// the exit programs that clear what they note (see hook.Fentry).
func (a *attached) close() {
	for i := len(a.links) - 1; i >= 0; i-- {
		a.links[i].Close()
	}
	for _, p := range a.progs {
		p.Close()
	}
	a.links, a.progs = nil, nil
}

// attachAll loads and attaches every named program of obj in order; on any
// failure it undoes what it did, so a tier is taken whole or not at all.
func attachAll(obj *object, names []string) (*attached, error) {
	a := &attached{}
	for _, name := range names {
		prog, err := obj.program(name)
		if err != nil {
			a.close()
			return nil, err
		}
		a.progs = append(a.progs, prog)
		l, err := attachProgram(obj.spec.Programs[name], prog)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("attaching %s: %w", name, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

func attachProgram(spec *ebpf.ProgramSpec, prog *ebpf.Program) (link.Link, error) {
	switch spec.Type {
	case ebpf.Tracing:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case ebpf.Kprobe:
		if strings.HasPrefix(spec.SectionName, "kretprobe/") {
			return link.Kretprobe(spec.AttachTo, prog, nil)
		}
		return link.Kprobe(spec.AttachTo, prog, nil)
	case ebpf.TracePoint:
		group, name, ok := strings.Cut(spec.AttachTo, "/")
		if !ok {
			return nil, fmt.Errorf("tracepoint %q has no group", spec.AttachTo)
		}
		return link.Tracepoint(group, name, prog, nil)
	}
	return nil, fmt.Errorf("program type %s: %w", spec.Type, errors.ErrUnsupported)
}
