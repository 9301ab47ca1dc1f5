package idem

import (
	"sync"
	"sync/atomic"
	"time"
)

// recentClock is the time that replays from the cache are checked against:
// the process's clock as of at most a tick ago, read from memory. A clock
// read costs 66–90 ns on the machines measured (docs/numbers.md), a third
// of a cached replay.
//
// A time that lags can only make a cached record look younger than it is:
// a record may be replayed for up to a tick (more while timers run late)
// past the end of its TTL, and never forgotten early. Everything a call
// stores, and every decision but that hit, reads the clock itself.
//
// The clock ticks only while it is read: a tick that finds no read since
// the one before stops it, and the next read, seeing it stopped, reads the
// clock and starts it again. An idle store wakes nobody.
type recentClock struct {
	wall    func() time.Time
	now     atomic.Int64 // Unix nanoseconds at the last tick
	read    atomic.Bool  // now was read since the last tick
	ticking atomic.Bool

	mu      sync.Mutex // guards timer and stopped, and orders starts and ticks
	timer   *time.Timer
	stopped bool
}

// recentTick is how often a read clock is brought up to date.
const recentTick = time.Millisecond

func newRecentClock(wall func() time.Time) *recentClock { return &recentClock{wall: wall} }

// Now returns the clock's time, in Unix nanoseconds.
func (c *recentClock) Now() int64 {
	if !c.ticking.Load() {
		return c.start()
	}
	if !c.read.Load() { // a load, not a store, on most reads: the line stays shared
		c.read.Store(true)
	}
	return c.now.Load()
}

// start reads the clock and, unless it is ticking already or stopped,
// starts it.
func (c *recentClock) start() int64 {
	now := c.wall().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ticking.Load() || c.stopped {
		return now
	}
	c.now.Store(now)
	c.read.Store(false)
	c.ticking.Store(true)
	if c.timer == nil {
		c.timer = time.AfterFunc(recentTick, c.tick)
	} else {
		c.timer.Reset(recentTick)
	}
	return now
}

// tick brings the time up to date, or stops the clock if nobody read it
// since the last tick.
func (c *recentClock) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if !c.read.Swap(false) {
		c.ticking.Store(false)
		return
	}
	c.now.Store(c.wall().UnixNano())
	c.timer.Reset(recentTick)
}

// stop stops the clock for good: later reads read the clock each time.
func (c *recentClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.ticking.Store(false)
	if c.timer != nil {
		c.timer.Stop()
	}
}
