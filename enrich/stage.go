package enrich

import (
	"sync"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

// Stage runs enrichment between the tracer and the sinks. An event is
// enriched and passed on at once, unless its actor runs in a container no
// pod source knows yet (a pod started since the last listing): then it is
// held, with everything after it so that order is kept, until the sources
// answer or Options.Wait ends. The tracer is never made to wait: holding
// copies the event into a queue.
type Stage struct {
	e    *Enricher
	emit func(*event.Event)

	// mu serializes the enricher's process cache and the calls of emit.
	mu       sync.Mutex
	queue    []heldEvent
	noWait   map[string]time.Time // container ids that timed out: not waited for again until then
	kick     chan struct{}
	closing  chan struct{}
	finished chan struct{}
}

type heldEvent struct {
	ev       event.Event
	deadline time.Time
}

// maxHeld bounds the queue: past it the oldest held event goes out without
// its answer, rather than memory growing with a flush behind it.
const maxHeld = 1 << 16

// noWaitFor is how long a container that was waited for in vain is not
// waited for again (its events still get the answer once it comes).
const noWaitFor = time.Minute

// NewStage returns the stage that enriches events for emit.
func (e *Enricher) NewStage(emit func(*event.Event)) *Stage {
	s := &Stage{
		e: e, emit: emit,
		noWait:   map[string]time.Time{},
		kick:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		finished: make(chan struct{}),
	}
	go s.run()
	return s
}

// AddProcess is tracer.Options.OnProcess.
func (s *Stage) AddProcess(p *tracer.Process) {
	s.mu.Lock()
	s.e.AddProcess(p)
	s.mu.Unlock()
}

// Write is the tracer's emit function.
func (s *Stage) Write(ev *event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.e.Enrich(ev)
	if len(s.queue) == 0 && !s.mustWait(ev) {
		s.emit(ev)
		return
	}
	if len(s.queue) >= maxHeld {
		s.e.stats.HeldTimedOut.Add(1)
		s.emit(&s.queue[0].ev)
		s.queue = s.queue[1:]
	}
	s.e.stats.Held.Add(1)
	s.queue = append(s.queue, heldEvent{ev: *ev, deadline: time.Now().Add(s.e.opts.Wait)})
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close returns once every held event is sent, in order: each still gets
// the rest of its wait (at most Options.Wait), so that a run's last
// changes are named too. Write must not be called any more.
func (s *Stage) Close() {
	close(s.closing)
	<-s.finished
}

// mustWait: the actor runs in a container that the sources do not know
// yet, and that was not waited for in vain lately.
func (s *Stage) mustWait(ev *event.Event) bool {
	if len(s.e.sources) == 0 {
		return false
	}
	return s.unresolved(&ev.Actor) || (ev.Cause.Valid && s.unresolved(&ev.Cause.Actor))
}

func (s *Stage) unresolved(a *event.Actor) bool {
	p := a.Process
	if p == nil || p.ContainerID == "" || p.Container != nil {
		return false
	}
	until, ok := s.noWait[p.ContainerID]
	return !ok || time.Now().After(until)
}

func (s *Stage) run() {
	defer close(s.finished)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	closing := s.closing
	for {
		s.mu.Lock()
		var deadline time.Time
		if len(s.queue) > 0 {
			deadline = s.queue[0].deadline
		}
		s.mu.Unlock()
		refreshed := s.e.waitRefresh()
		if deadline.IsZero() {
			if closing == nil {
				return // closed, and nothing is held any more
			}
			select {
			case <-s.kick:
				continue
			case <-closing:
				closing = nil
				continue
			}
		}
		timer.Reset(time.Until(deadline))
		select {
		case <-refreshed:
		case <-timer.C:
		case <-closing:
			closing = nil // held events still get their wait: no new ones come
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		s.release()
	}
}

// release looks the held events up again and sends, in order, those that
// are answered or due.
func (s *Stage) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for len(s.queue) > 0 {
		h := &s.queue[0]
		h.ev.Actor.Process, h.ev.Cause.Actor.Process = nil, nil
		s.e.enrichActor(&h.ev.Actor, s.e.pods.Load())
		if h.ev.Cause.Valid {
			s.e.enrichActor(&h.ev.Cause.Actor, s.e.pods.Load())
		}
		if s.mustWait(&h.ev) {
			if now.Before(h.deadline) {
				return
			}
			s.e.stats.HeldTimedOut.Add(1)
			for _, a := range []*event.Actor{&h.ev.Actor, &h.ev.Cause.Actor} {
				if p := a.Process; p != nil && p.ContainerID != "" && p.Container == nil {
					s.noWait[p.ContainerID] = now.Add(noWaitFor)
				}
			}
		}
		s.emit(&h.ev)
		s.queue[0] = heldEvent{}
		s.queue = s.queue[1:]
	}
	if len(s.noWait) > 1024 {
		for id, until := range s.noWait {
			if now.After(until) {
				delete(s.noWait, id)
			}
		}
	}
}
