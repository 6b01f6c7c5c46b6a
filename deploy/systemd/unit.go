// Package systemd holds routetrace.service, the unit for nodes that run
// routetrace under systemd, so that the incident VM's test installs exactly
// the file users copy (vmtest/incident, scenario service).
package systemd

import _ "embed"

// Unit is routetrace.service as shipped.
//
//go:embed routetrace.service
var Unit string

// UnitName and UnitPath are where the unit's install comment puts it.
const (
	UnitName = "routetrace.service"
	UnitPath = "/etc/systemd/system/" + UnitName
	// DefaultsPath is the optional EnvironmentFile: ROUTETRACE_ARGS and
	// OTEL_* variables.
	DefaultsPath = "/etc/default/routetrace"
)
