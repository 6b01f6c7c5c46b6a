package metrics

import (
	"fmt"
	"net"
	"strconv"
)

// DefaultAddr is where the endpoint listens when no address is given: the
// loopback interface only, since the metrics name the units and commands
// that change routes on this host.
const DefaultAddr = "127.0.0.1:9464"

// ListenAddr turns a --metrics-addr value into the address to listen on.
// A bare port ("9464") or an address with no host (":9464") binds
// 127.0.0.1: serving every interface must be asked for by naming the host
// ("0.0.0.0:9464", "[::]:9464"), because net.Listen reads ":9464" as all
// of them. The port must be a number (0 picks a free one).
func ListenAddr(s string) (string, error) {
	if s == "" {
		return DefaultAddr, nil
	}
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", s), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("--metrics-addr %q: want HOST:PORT, :PORT or PORT: %w", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("--metrics-addr %q: port %q is not a number from 0 to 65535", s, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
