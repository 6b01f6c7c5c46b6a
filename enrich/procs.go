package enrich

import "github.com/routetrace/routetrace/event"

// procCacheSize bounds the processes kept: twice the kernel's procs_seen
// map, so that a process the kernel still remembers (it sends no second
// record while it does) is not forgotten here first, as long as it keeps
// acting: entries used since the last sweep get a second chance.
const procCacheSize = 32768

type procEntry struct {
	proc *event.Process
	gen  uint64 // the pod index the container was looked up in
	used bool
}

// procCache maps the kernel's process cookies to processes, evicting with
// the clock algorithm: a hit sets a bit, allocation-free.
type procCache struct {
	max   int
	m     map[uint64]*procEntry
	clock []uint64 // cookies in insertion order, swept from hand
	hand  int
}

func newProcCache(max int) *procCache {
	return &procCache{max: max, m: make(map[uint64]*procEntry)}
}

func (c *procCache) get(cookie uint64) *procEntry {
	e := c.m[cookie]
	if e != nil {
		e.used = true
	}
	return e
}

func (c *procCache) put(cookie uint64, e *procEntry) {
	if _, ok := c.m[cookie]; ok {
		c.m[cookie] = e
		return
	}
	if len(c.clock) < c.max {
		c.clock = append(c.clock, cookie)
		c.m[cookie] = e
		return
	}
	for {
		old := c.clock[c.hand]
		if oe := c.m[old]; oe != nil && oe.used {
			oe.used = false
			c.hand = (c.hand + 1) % len(c.clock)
			continue
		}
		delete(c.m, old)
		c.clock[c.hand] = cookie
		c.m[cookie] = e
		c.hand = (c.hand + 1) % len(c.clock)
		return
	}
}

func (c *procCache) len() int { return len(c.m) }
