// Package exporter holds routetrace's local sinks: human lines for a
// terminal, JSON lines for machines, and a summary of counts for the end of
// a run. Each sink is fed one event at a time from the tracer's read loop.
package exporter

import "github.com/routetrace/routetrace/event"

// Sink consumes events; ev is only valid during the call (the tracer reuses it).
// Sinks are not safe for concurrent Writes: the tracer has one read loop.
type Sink interface {
	Write(ev *event.Event) error
	Close() error
}
