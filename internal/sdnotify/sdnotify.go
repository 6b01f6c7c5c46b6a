// Package sdnotify tells systemd how a service is doing (the sd_notify(3)
// protocol, without libsystemd). With Type=notify in routetrace.service,
// `systemctl start routetrace` returns once the probes are attached, so a
// networkd restart ordered after it cannot slip by before tracing starts.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Notify sends state (newline-separated VAR=value assignments, e.g.
// "READY=1\nSTATUS=tracing") to the socket systemd names in
// $NOTIFY_SOCKET. It reports false, and does nothing, when the process
// was not started by systemd with a notify socket.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	// A leading '@' names an abstract socket; the net package maps it.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return true, fmt.Errorf("notifying systemd at NOTIFY_SOCKET=%s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return true, fmt.Errorf("notifying systemd at NOTIFY_SOCKET=%s: %w", path, err)
	}
	return true, nil
}
