package policy

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/routetrace/routetrace/event"
)

// The names iproute2 gives protocols and tables: the ones event names
// (the same on every node) and those this node's rt_protos and rt_tables
// files add. Marshal writes only the former, so a policy written on one
// node parses on another.
var (
	hostNamesOnce  sync.Once
	hostProtocols  map[string]uint8
	hostTables     map[string]uint32
	iproute2Dirs   = []string{"/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"}
	builtinTables  = map[string]uint32{"default": 253, "main": 254, "local": 255}
	builtinProtoBy = builtinProtocolMap()
)

func builtinProtocolMap() map[string]uint8 {
	m := map[string]uint8{}
	for i := range 256 {
		if name := event.ProtocolName(uint8(i)); name != strconv.Itoa(i) {
			m[name] = uint8(i)
		}
	}
	return m
}

// builtinProtocols lists the protocol names every node knows, for messages.
func builtinProtocols() []string {
	var names []string
	for i := range 256 {
		if name := event.ProtocolName(uint8(i)); name != strconv.Itoa(i) {
			names = append(names, name)
		}
	}
	return names
}

// protocolText is how Marshal writes a protocol: its name where every
// node knows it, else its number.
func protocolText(p uint8) string { return event.ProtocolName(p) }

// tableText is how Marshal writes a table: main, local and default by
// name, others by number.
func tableText(t uint32) string {
	for name, n := range builtinTables {
		if n == t {
			return name
		}
	}
	return strconv.FormatUint(uint64(t), 10)
}

func lookupProtocol(s string) (uint8, bool) { return lookupName(s, 8, builtinProtoBy, &hostProtocols) }

func lookupTable(s string) (uint32, bool) { return lookupName(s, 32, builtinTables, &hostTables) }

// lookupName reads a number of bits bits, or a name every node knows, or
// one of this node's iproute2 files.
func lookupName[T uint8 | uint32](s string, bits int, builtin map[string]T, host *map[string]T) (T, bool) {
	if n, err := strconv.ParseUint(s, 10, bits); err == nil {
		return T(n), true
	}
	if v, ok := builtin[s]; ok {
		return v, true
	}
	hostNamesOnce.Do(readHostNames)
	v, ok := (*host)[s]
	return v, ok
}

func readHostNames() {
	hostProtocols = map[string]uint8{}
	hostTables = map[string]uint32{}
	for _, dir := range iproute2Dirs {
		readNameFiles(dir, "rt_protos", func(name string, n uint64) {
			if n <= 255 {
				hostProtocols[name] = uint8(n)
			}
		})
		readNameFiles(dir, "rt_tables", func(name string, n uint64) {
			if n <= 1<<32-1 {
				hostTables[name] = uint32(n)
			}
		})
	}
}

// readNameFiles reads dir/base and dir/base.d/*.conf, iproute2's
// "NUMBER NAME" lines; missing files are no names.
func readNameFiles(dir, base string, add func(name string, n uint64)) {
	files, _ := filepath.Glob(filepath.Join(dir, base+".d", "*.conf"))
	for _, f := range append([]string{filepath.Join(dir, base)}, files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			n, err := strconv.ParseUint(fields[0], 0, 32)
			if err != nil {
				continue
			}
			add(fields[1], n)
		}
	}
}
