package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

// identity checks the bench's deletions as the tracer reports them: each
// of the N routes deleted exactly once, by the process that deleted it.
// Counting alone cannot see a deletion reported twice and another never,
// nor one blamed on the wrong process. It keeps 6 bytes per route.
type identity struct {
	n     int
	netns uint32

	mu    sync.Mutex
	count []uint8  // reports per route, saturating
	pid   []uint32 // the last report's actor pid
	comm  []uint8  // and comm, as an index into comms
	comms []string
	// Reports that match no route: failures, other deletions in the
	// namespace, flush records that stand for routes not reported one by
	// one.
	failed, unexpected uint64
	odd                []string // the first few of those, described

	// With enrichment: each deletion must come with its command line.
	wantProcess bool
	named       atomic.Uint64 // deletions whose actor has a command line
	unnamed     atomic.Uint64 // deletions whose actor has none

	events  atomic.Uint64 // every event the tracer emitted, anywhere
	adds    atomic.Uint64 // successful route adds in the namespace
	deletes atomic.Uint64 // deletions of one of the N routes
}

// identityCounts is what one or more checks found.
type identityCounts struct {
	Correct    uint64 `json:"correct"`     // reported exactly once, right pid and comm
	Missing    uint64 `json:"missing"`     // never reported
	Duplicated uint64 `json:"duplicated"`  // reported more than once
	WrongActor uint64 `json:"wrong_actor"` // reported with another pid or comm
	Failed     uint64 `json:"failed"`      // reported as a failed attempt
	Unexpected uint64 `json:"unexpected"`  // deletions or flush records in the namespace that are none of the N
}

func (c *identityCounts) add(o identityCounts) {
	c.Correct += o.Correct
	c.Missing += o.Missing
	c.Duplicated += o.Duplicated
	c.WrongActor += o.WrongActor
	c.Failed += o.Failed
	c.Unexpected += o.Unexpected
}

func (c identityCounts) mismatched() uint64 {
	return c.Missing + c.Duplicated + c.WrongActor + c.Failed + c.Unexpected
}

func (c identityCounts) String() string {
	return fmt.Sprintf("missing %d, duplicated %d, wrong actor %d, reported failed %d, unexpected %d",
		c.Missing, c.Duplicated, c.WrongActor, c.Failed, c.Unexpected)
}

const maxExamples = 5

func newIdentity(n int, netns uint32) *identity {
	return &identity{n: n, netns: netns, count: make([]uint8, n), pid: make([]uint32, n), comm: make([]uint8, n)}
}

// routeIndex is the i of benchRoute(i) for dst, if it is one.
func routeIndex(dst netip.Prefix, n int) (int, bool) {
	if !dst.Addr().Is4() || dst.Bits() != 24 {
		return 0, false
	}
	a := dst.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	if v < 10<<24 || v&0xff != 0 {
		return 0, false
	}
	i := (v - 10<<24) >> 8
	if i >= uint32(n) {
		return 0, false
	}
	return int(i), true
}

// observe is the tracer's emit function.
func (id *identity) observe(ev *event.Event) {
	id.events.Add(1)
	if ev.Netns != id.netns || ev.Object != event.ObjectRoute {
		return
	}
	switch ev.Op {
	case event.OpAdd, event.OpReplace:
		if ev.Errno == 0 {
			id.adds.Add(1)
		}
		return
	case event.OpDelete, event.OpFlush:
	default:
		return
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	i, ours := routeIndex(ev.Dst, id.n)
	switch {
	case ev.Op == event.OpFlush:
		id.unexpected++
		id.note(fmt.Sprintf("a flush record of %d routes in table %d (routes not reported one by one)", ev.Count, ev.Table))
	case ev.Errno != 0:
		id.failed++
		id.note(fmt.Sprintf("%s reported as failed with %s by %s", ev.Dst, event.ErrnoName(ev.Errno), actorName(&ev.Actor)))
	case !ours:
		id.unexpected++
		id.note(fmt.Sprintf("%s deleted by %s: not one of the bench's routes", ev.Dst, actorName(&ev.Actor)))
	default:
		if id.count[i] < 255 {
			id.count[i]++
		}
		id.pid[i] = ev.Actor.Tgid
		id.comm[i] = id.commIndex(&ev.Actor)
		if id.wantProcess {
			if p := ev.Actor.Process; p != nil && len(p.Cmdline) > 0 {
				id.named.Add(1)
			} else {
				id.unnamed.Add(1)
			}
		}
		id.deletes.Add(1)
	}
}

func (id *identity) note(s string) {
	if len(id.odd) < maxExamples {
		id.odd = append(id.odd, s)
	}
}

// commIndex interns the actor's comm ("kernel" for the kernel, "" when
// unknown); past 255 names, the last index stands for any other.
func (id *identity) commIndex(a *event.Actor) uint8 {
	name := a.Comm.Bytes()
	if a.Kernel {
		name = []byte("kernel")
	}
	for i, c := range id.comms {
		if c == string(name) {
			return uint8(i)
		}
	}
	if len(id.comms) == 255 {
		return 254
	}
	id.comms = append(id.comms, string(name))
	return uint8(len(id.comms) - 1)
}

func actorName(a *event.Actor) string {
	switch {
	case a.Kernel:
		return "kernel"
	case a.Unknown():
		return "unknown"
	}
	return a.Comm.String() + "[" + strconv.FormatUint(uint64(a.Tgid), 10) + "]"
}

// reset forgets what was reported, for the next case.
func (id *identity) reset() {
	id.mu.Lock()
	defer id.mu.Unlock()
	clear(id.count)
	clear(id.pid)
	clear(id.comm)
	id.failed, id.unexpected, id.odd = 0, 0, nil
	id.adds.Store(0)
	id.deletes.Store(0)
}

// settle waits until the tracer has caught up: got() reached N and
// nothing new came for a moment, or nothing came for a second (something
// is missing: the check will say what), or two minutes passed.
func (id *identity) settle(t *tracer.Tracer, got func() uint64) {
	const poll = 50 * time.Millisecond
	activity := func() uint64 { return id.events.Load() + t.Stats().Records.Load() }
	last, still := activity(), 0
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		time.Sleep(poll)
		if now := activity(); now != last {
			last, still = now, 0
			continue
		}
		still++
		if (got() >= uint64(id.n) && still >= 4) || still >= 20 {
			return
		}
	}
}

// check compares what was reported with what the case did: every route
// deleted once, by comm and one of pids (the processes the case ran). It
// returns the counts and a few examples of each kind of mismatch.
func (id *identity) check(pids []uint32, comm string) (identityCounts, []string) {
	id.mu.Lock()
	defer id.mu.Unlock()
	c := identityCounts{Failed: id.failed, Unexpected: id.unexpected}
	var missing, dup, wrong []string
	for i := range id.n {
		switch {
		case id.count[i] == 0:
			c.Missing++
			if len(missing) < maxExamples {
				missing = append(missing, benchDst(i)+" never reported")
			}
		case id.count[i] > 1:
			c.Duplicated++
			if len(dup) < maxExamples {
				dup = append(dup, fmt.Sprintf("%s reported %d times", benchDst(i), id.count[i]))
			}
		case !slices.Contains(pids, id.pid[i]) || id.comms[id.comm[i]] != comm:
			c.WrongActor++
			if len(wrong) < maxExamples {
				got := id.comms[id.comm[i]]
				if got == "" && id.pid[i] == 0 {
					got = "unknown"
				}
				wrong = append(wrong, fmt.Sprintf("%s deleted by %s%v, reported as by %s[%d]", benchDst(i), comm, pids, got, id.pid[i]))
			}
		default:
			c.Correct++
		}
	}
	examples := append(append(append(missing, dup...), wrong...), id.odd...)
	return c, examples
}

func benchDst(i int) string {
	d := benchRoute(i)
	return fmt.Sprintf("%d.%d.%d.0/24", d[0], d[1], d[2])
}
