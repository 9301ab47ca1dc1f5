package idem

import (
	"sync"
	"sync/atomic"
	"time"
)

// recentClock is what replays from the cache are checked against: the
// process's clock as of a recent tick, read from memory. A clock read
// costs 45–90 ns on the machines measured (docs/numbers.md), a third of a
// cached replay.
//
// Its lag is a tick (a millisecond) while timers run on time, and more
// when every processor is busy, since a timer runs only when the scheduler
// gets to it. So a cached record is replayed on its word only while it has
// recentSlack to live by this clock; nearer its deadline the hit reads the
// clock itself (see shard.enter), and expiry stays exact unless timers run
// more than recentSlack late. One case makes them: a process frozen
// (SIGSTOP, a paused or migrated VM, a suspended host) resumes with the
// time it froze at, and for the milliseconds until the overdue tick runs
// a record whose deadline passed during the freeze may still be replayed.
// Late, never early: a key never runs twice for it. Everything a call
// stores, and every other decision, reads the clock itself.
//
// The clock ticks only while it is read: a tick that finds no read since
// the one before stops it, and the next read, seeing it stopped, reads the
// clock and starts it again. An idle store wakes nobody; its first hit
// after a rest reads the clock.
type recentClock struct {
	wall    func() time.Time
	now     atomic.Int64 // Unix nanoseconds at the last tick
	read    atomic.Bool  // now was read since the last tick
	ticking atomic.Bool

	mu      sync.Mutex // guards timer and stopped, and orders starts and ticks
	timer   *time.Timer
	stopped bool
}

// recentTick is how often a read clock is brought up to date, and
// recentSlack how much longer a record must live by it to be replayed from
// the cache without reading the clock: a thousand ticks.
const (
	recentTick  = time.Millisecond
	recentSlack = time.Second
)

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
// starts it. The clock is read under the lock, so that a reading delayed
// on its way cannot set a newer one back.
func (c *recentClock) start() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.wall().UnixNano()
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
