package exporter

import (
	"errors"
	"slices"

	"github.com/routetrace/routetrace/event"
)

type multi []Sink

// Multi returns a sink that writes every event to each of sinks in order.
// A sink that fails does not stop the others: one broken pipe should not
// blind the terminal too.
func Multi(sinks ...Sink) Sink {
	return multi(slices.Clone(sinks))
}

func (m multi) Write(ev *event.Event) error {
	var errs []error
	for _, s := range m {
		if err := s.Write(ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close closes every sink, even after one fails.
func (m multi) Close() error {
	var errs []error
	for _, s := range m {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
