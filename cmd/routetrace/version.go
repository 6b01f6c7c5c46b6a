package main

import (
	"crypto/sha256"
	byteorder "encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/enforce"
	"github.com/routetrace/routetrace/tracer"
)

// version and buildCommit are set at build time (the Makefile's LDFLAGS):
// -ldflags "-X main.version=v1.2.3 -X main.buildCommit=<sha>[-modified]".
// Without them, Go's VCS stamp is used where the build made one.
var (
	version     = ""
	buildCommit = ""
)

func versionString() string {
	return fmt.Sprintf("routetrace %s (%s, %s/%s)", shortVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// shortVersion is the version alone: the ldflags', else the module's or
// "devel" with the commit (service.version on spans).
func shortVersion() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if rev, _ := commit(); len(rev) >= 12 {
			v += "+" + rev[:12]
		}
	}
	return v
}

// commit is the VCS revision the binary was built from, and whether the
// tree had changes not committed: buildCommit, else Go's VCS stamp ("" if
// neither).
func commit() (rev string, modified bool) {
	if buildCommit != "" {
		rev, dirty := strings.CutSuffix(buildCommit, "-modified")
		return rev, dirty
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, modified
}

// bpfObjectsHash is the SHA-256 of every BPF object this build loads, by
// name in order (each name, its length, its bytes): two binaries with the
// same hash put the same programs in the kernel.
func bpfObjectsHash() string {
	objs := tracer.Objects()
	objs["enforce"] = enforce.Object()
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(objs)) {
		h.Write([]byte(name))
		h.Write(byteorder.BigEndian.AppendUint64(nil, uint64(len(objs[name]))))
		h.Write(objs[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the commit, the Go release and the hash of the BPF objects built in",
		Description: "The first line is the version; then the commit it was built from (\"(modified)\" when the\n" +
			"tree had changes) and the SHA-256 of the BPF objects compiled in, which names what the\n" +
			"binary loads into the kernel (the same hash, the same programs).",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			fmt.Fprintln(w, versionString())
			rev, modified := commit()
			if rev == "" {
				rev, modified = "unknown (built outside a git checkout, or with -buildvcs=false and no -X main.buildCommit)", false
			}
			if modified {
				rev += " (modified)"
			}
			fmt.Fprintf(w, "commit      %s\n", rev)
			fmt.Fprintf(w, "bpf objects sha256:%s\n", bpfObjectsHash())
			return nil
		},
	}
}
