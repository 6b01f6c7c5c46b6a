package main

import (
	"debug/elf"
	"fmt"
	"runtime"
)

// arch holds everything that differs between guest architectures, so the
// rest of the harness never switches on an architecture name.
type arch struct {
	name       string      // Go and Debian name: amd64, arm64
	qemu       string      // emulator binary
	qemuPkg    string      // Debian package that ships it
	machine    []string    // extra machine arguments for every accelerator
	tcgCPU     string      // -cpu under TCG ("" = machine default)
	console    string      // serial console device in the guest
	triplet    string      // multiarch library directory name
	elfMachine elf.Machine // to reject binaries built for the wrong guest
	// compatMachine: another ELF machine the guest runs (0: none)
	compatMachine elf.Machine
}

var arches = map[string]*arch{
	"amd64": {
		name:    "amd64",
		qemu:    "qemu-system-x86_64",
		qemuPkg: "qemu-system-x86",
		// The default pc machine has ACPI, which `poweroff -f` needs to
		// make QEMU exit.
		machine:    nil,
		console:    "ttyS0",
		triplet:    "x86_64-linux-gnu",
		elfMachine: elf.EM_X86_64,
		// static 32-bit binaries run too (IA32 emulation): the
		// enforcer's compat ioctl test
		compatMachine: elf.EM_386,
	},
	"arm64": {
		name:    "arm64",
		qemu:    "qemu-system-aarch64",
		qemuPkg: "qemu-system-arm",
		// virt has no default CPU model worth using; PSCI gives poweroff.
		machine: []string{"-M", "virt"},
		// Every feature, but pointer authentication with QEMU's
		// cheap IMPDEF algorithm: Debian's arm64 kernel and userland
		// sign and check return addresses in every function, and the
		// architected QARMA5 costs TCG more than the code it guards.
		tcgCPU:     "max,pauth-impdef=on",
		console:    "ttyAMA0",
		triplet:    "aarch64-linux-gnu",
		elfMachine: elf.EM_AARCH64,
		// static 32-bit ARM binaries run too (Debian's arm64 kernels
		// have CONFIG_COMPAT): the enforcer's compat ioctl test
		compatMachine: elf.EM_ARM,
	},
}

func lookupArch(name string) (*arch, error) {
	a, ok := arches[name]
	if !ok {
		return nil, fmt.Errorf("unsupported architecture %q (want amd64 or arm64)", name)
	}
	return a, nil
}

// native reports whether guest binaries can be taken from the host, which
// also decides whether KVM is worth probing.
func (a *arch) native() bool { return a.name == runtime.GOARCH }

// kernelPackageSuffix is the Debian cloud flavour: unsigned because we never
// need Secure Boot, cloud because it is the smallest flavour that still has
// BTF, BPF LSM and veth.
func (a *arch) kernelPackageSuffix() string { return "-cloud-" + a.name + "-unsigned" }

// aptName qualifies a package with the architecture only when it is
// foreign: apt then fetches the foreign build, which works only after
// `dpkg --add-architecture`, so native runs never need that step.
func (a *arch) aptName(pkg string) string {
	if a.native() {
		return pkg
	}
	return pkg + ":" + a.name
}
