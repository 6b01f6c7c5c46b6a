package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen is a notify socket as systemd opens it: a unixgram socket at a
// path or, with a leading '@', in the abstract namespace.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listening on %q: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("reading the notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		"@routetrace-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-"),
	} {
		t.Run(name[:1], func(t *testing.T) {
			conn := listen(t, name)
			t.Setenv("NOTIFY_SOCKET", name)
			const state = "READY=1\nSTATUS=tracing"
			sent, err := Notify(state)
			if !sent || err != nil {
				t.Fatalf("Notify = %v, %v; want true, nil", sent, err)
			}
			if got := receive(t, conn); got != state {
				t.Fatalf("systemd got %q, want %q", got, state)
			}
		})
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Fatalf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
}

func TestNotifyNamesTheSocket(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	t.Setenv("NOTIFY_SOCKET", missing)
	sent, err := Notify("READY=1")
	if !sent || err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET="+missing) {
		t.Fatalf("Notify to a missing socket = %v, %v; want true and an error naming NOTIFY_SOCKET=%s", sent, err, missing)
	}
}
