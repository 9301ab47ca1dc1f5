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
// reading it replaces has gone stale.
func (c *serverClock) observe(sent time.Time, us int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sent.IsZero() || time.Since(c.sent) > clockFresh/2 || us-sent.Sub(c.sent).Microseconds() <= c.us {
		c.sent, c.us = sent, us
	}
}

// now returns an estimate of the server's time in Unix microseconds that
// is not earlier than the true time, or false if there is no fresh reading.
func (c *serverClock) now() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	since := time.Since(c.sent)
	if c.sent.IsZero() || since > clockFresh {
		return 0, false
	}
	return c.us + since.Microseconds() + 1, true
}
