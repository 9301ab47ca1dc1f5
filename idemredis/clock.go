package idemredis

import (
	"sync"
	"time"
)

// clockFresh is how long a reading of the server's clock is used for:
// longer, and the local clock's drift could make an estimate early.
const clockFresh = time.Second

// serverClock estimates the Redis server's clock between readings of it,
// from the latest reading and the local monotonic clock. A reading is
// taken by a command sent at a known local moment, so the server's time
// at that moment was at most the time read: an estimate is never early,
// and late by at most the reading's round trip.
type serverClock struct {
	mu   sync.Mutex
	sent time.Time // when the reading's command was sent (local, monotonic)
	us   int64     // the server's time read, in Unix microseconds
}

// observe records that a command sent at sent read the server's time us.
// It is kept if it gives the earlier estimate (the tighter bound), or the
// reading it replaces was sent half the freshness window before it.
func (c *serverClock) observe(sent time.Time, us int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	after := sent.Sub(c.sent)
	if c.sent.IsZero() || after > clockFresh/2 || us-after.Microseconds() <= c.us {
		c.sent, c.us = sent, us
	}
}

// now returns the local time and an estimate of the server's time then,
// in Unix microseconds, that is not earlier than the true time; ok is
// false if there is no fresh reading to estimate from.
func (c *serverClock) now() (us int64, at time.Time, ok bool) {
	at = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	since := at.Sub(c.sent)
	if c.sent.IsZero() || since > clockFresh {
		return 0, at, false
	}
	return c.us + since.Microseconds() + 1, at, true
}
