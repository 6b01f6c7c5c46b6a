//go:build !linux

package exporter

import "io"

// IsTerminal reports false: routetrace only traces on Linux, so elsewhere
// the sinks only replay recorded events.
func IsTerminal(w io.Writer) bool { return false }
