package main

import (
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/routetrace/routetrace/internal/testnet"
	"github.com/routetrace/routetrace/internal/tiertest"
)

// TestTraceNotifiesSystemd: under systemd (Type=notify, routetrace.service)
// trace says READY=1 once attached and STOPPING=1 when asked to stop, on
// the socket in $NOTIFY_SOCKET. The unit itself is tested with real systemd
// in the incident VM (vmtest/incident, scenario service).
func TestTraceNotifiesSystemd(t *testing.T) {
	tiertest.TierIndependent(t) // the status line accepts any tier
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	next := func(what string) string {
		t.Helper()
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", what, err)
		}
		return string(buf[:n])
	}

	p := startTraceEnv(t, ns, []string{"NOTIFY_SOCKET=" + path})
	ready := regexp.MustCompile(`^READY=1\nSTATUS=tracing: \d+ fentry, \d+ kprobe hooks; tier 3 (true|false), capture \w*$`)
	if got := next("READY=1"); !ready.MatchString(got) {
		t.Errorf("first notification %q, want it to match %s", got, ready)
	}
	p.stop()
	const stopping = "STOPPING=1\nSTATUS=stopping: sending what the journal holds"
	if got := next("STOPPING=1"); got != stopping {
		t.Errorf("notification at SIGINT %q, want %q", got, stopping)
	}
}
