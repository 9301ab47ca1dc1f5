package idemredis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// clockFresh is how long a reading of the server's clock is used for:
// longer, and the local clock's drift could make an estimate early.
const clockFresh = time.Second

// serverClock estimates the Redis server's clock between readings of it,
// from the latest reading and the local monotonic clock. A reading is
// taken by a command sent at a known local moment, so the server's time
// at that moment was at most the time read: an estimate is never early,
// and late by at most the reading's round trip. The local wall clock
// plays no part: a machine whose clock is set wrong estimates the same.
type serverClock struct {
	last atomic.Pointer[reading] // nil until the first reading

	mu      sync.Mutex    // guards reading
	reading chan struct{} // closed when the TIME command on the wire returns; nil if none
}

// reading is one reading of the server's clock.
type reading struct {
	sent time.Time // when its command was sent (local, monotonic)
	us   int64     // the server's time read, in Unix microseconds
}

// observe records that a command sent at sent read the server's time us.
// It is kept if it gives the earlier estimate (the tighter bound), or the
// reading it replaces was sent half the freshness window before it.
func (c *serverClock) observe(sent time.Time, us int64) {
	r := &reading{sent: sent, us: us}
	for {
		old := c.last.Load()
		if old != nil {
			after := sent.Sub(old.sent)
			if after <= clockFresh/2 && us-after.Microseconds() > old.us {
				return
			}
		}
		if c.last.CompareAndSwap(old, r) {
			return
		}
	}
}

// now returns the local time and an estimate of the server's time then,
// in Unix microseconds, that is not earlier than the true time; ok is
// false if there is no fresh reading to estimate from.
func (c *serverClock) now() (us int64, at time.Time, ok bool) {
	at = time.Now()
	r := c.last.Load()
	if r == nil {
		return 0, at, false
	}
	since := at.Sub(r.sent)
	if since > clockFresh {
		return 0, at, false
	}
	return r.us + since.Microseconds() + 1, at, true
}

// Now implements [backend.Clock]: the server's time, estimated from a
// reading at most a second old (never early, late by at most the round
// trip of that reading), or read now if there is none. Claims read the
// clock on their way; otherwise a reading more than half a second old is
// refreshed in the background. On a Cluster, the estimate is of one
// node's clock.
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	for {
		if us, at, ok := b.clock.now(); ok {
			if r := b.clock.last.Load(); at.Sub(r.sent) > clockFresh/2 {
				b.readClock(false)
			}
			return time.UnixMicro(us), nil
		}
		wait, err := b.readClock(true)
		if err != nil {
			return time.Time{}, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// readClock starts a reading of the server's clock unless one is on the
// wire, and returns a channel closed when it is back. A reading that
// fails leaves the clock as it was; with wait, it is read on this
// goroutine and its error returned.
func (b *Backend) readClock(wait bool) (<-chan struct{}, error) {
	c := &b.clock
	c.mu.Lock()
	if c.reading != nil {
		defer c.mu.Unlock()
		return c.reading, nil
	}
	done := make(chan struct{})
	c.reading = done
	c.mu.Unlock()
	var err error
	read := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sent := time.Now()
		t, rerr := b.rdb.Time(ctx).Result()
		if rerr == nil {
			c.observe(sent, t.UnixMicro())
		}
		err = rerr
		c.mu.Lock()
		c.reading = nil
		c.mu.Unlock()
		close(done)
	}
	if !wait {
		go read()
		return done, nil
	}
	read()
	if err != nil {
		return nil, fmt.Errorf("idemredis: read the server's clock: %w", err)
	}
	return done, nil
}
