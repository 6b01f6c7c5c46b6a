// Package testnet makes the private network namespaces routetrace's
// privileged tests change routes in: real namespaces, real veth links, real
// iproute2, and nothing outside them.
package testnet

import (
	"fmt"
	"math/rand/v2"

	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routetrace/routetrace/rtnl"
)

// RequireRoot skips t unless it can create namespaces and load BPF.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF to create namespaces and load BPF")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command (apt-get install iproute2)")
	}
}

// Netns is a named network namespace with a veth pair v0/v1, both up,
// 192.0.2.1/24 and 2001:db8::1/64 on v0.
type Netns struct {
	Name  string
	Path  string
	Inode uint32
	V0    uint32 // ifindex of v0
	t     testing.TB
}

// New creates a namespace that is deleted when the test ends.
func New(t testing.TB) *Netns {
	t.Helper()
	n := &Netns{Name: fmt.Sprintf("rt-test-%d-%d", os.Getpid(), rand.Uint32()), t: t}
	n.Path = filepath.Join("/run/netns", n.Name)
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	n.IP("link", "set", "lo", "up")
	n.IP("link", "add", "v0", "type", "veth", "peer", "name", "v1")
	n.IP("link", "set", "v0", "up")
	n.IP("link", "set", "v1", "up")
	n.IP("addr", "add", "192.0.2.1/24", "dev", "v0")
	n.IP("-6", "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad")
	var err error
	if n.Inode, err = rtnl.NetnsInode(n.Path); err != nil {
		t.Fatal(err)
	}
	links, err := rtnl.Links(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	for idx, name := range links {
		if name == "v0" {
			n.V0 = idx
		}
	}
	if n.V0 == 0 {
		t.Fatal("v0 not found in", links)
	}
	return n
}

// IP runs `ip -n NAME args...`, fails the test on error, and returns the
// pid of the ip process (the actor the tracer must report).
func (n *Netns) IP(args ...string) uint32 {
	n.t.Helper()
	pid, out, err := n.TryIP(args...)
	if err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return pid
}

// TryIP is IP for commands expected to fail.
func (n *Netns) TryIP(args ...string) (pid uint32, out string, err error) {
	return Run("ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace (ip netns exec) and returns the
// pid of the command itself, which ip netns exec execs into.
func (n *Netns) Exec(name string, args ...string) (pid uint32, out string, err error) {
	return Run("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command and returns its pid and combined output.
func Run(name string, args ...string) (uint32, string, error) {
	cmd := exec.Command(name, args...)
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	pid := uint32(cmd.Process.Pid)
	err := cmd.Wait()
	return pid, b.String(), err
}

// Ifindex returns the index of a link in the namespace.
func (n *Netns) Ifindex(name string) uint32 {
	n.t.Helper()
	links, err := rtnl.Links(n.Path)
	if err != nil {
		n.t.Fatal(err)
	}
	for idx, l := range links {
		if l == name {
			return idx
		}
	}
	n.t.Fatalf("no link %s in %s", name, n.Name)
	return 0
}
