// Package serverclock estimates a database server's clock between
// readings of it, for the engines that date records by their server's
// clock (backend.Clock: idemredis, idempg).
package serverclock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Fresh is how long a reading of the server's clock is used for: longer,
// and the local clock's drift could make an estimate early.
const Fresh = time.Second

// Clock estimates the server's clock from the latest reading and the local
// monotonic clock. A reading is taken by a command sent at a known local
// moment, so the server's time at that moment was at most the time read:
// an estimate is never early, and late by at most the reading's round
// trip. The local wall clock plays no part: a machine whose clock is set
// wrong estimates the same. Set Read before the first call of Now.
type Clock struct {
	// Read reads the server's time, in Unix microseconds. It is set once,
	// rather than passed to each Now, so that a call does not allocate a
	// function value.
	Read func(context.Context) (int64, error)

	last atomic.Pointer[reading] // nil until the first reading

	mu      sync.Mutex    // guards reading
	reading chan struct{} // closed when the reading on the wire returns; nil if none
}

// reading is one reading of the server's clock.
type reading struct {
	sent time.Time // when its command was sent (local, monotonic)
	us   int64     // the server's time read, in Unix microseconds
}

// Observe records that a command sent at sent read the server's time us
// (Unix microseconds). It is kept if it gives the earlier estimate (the
// tighter bound), or the reading it replaces was sent half the freshness
// window before it.
func (c *Clock) Observe(sent time.Time, us int64) {
	var r *reading // made only when kept: most readings are not
	for {
		old := c.last.Load()
		if old != nil {
			after := sent.Sub(old.sent)
			if after <= Fresh/2 && us-after.Microseconds() > old.us {
				return
			}
		}
		if r == nil {
			r = &reading{sent: sent, us: us}
		}
		if c.last.CompareAndSwap(old, r) {
			return
		}
	}
}

// Estimate returns the local time and an estimate of the server's time
// then, in Unix microseconds, that is not earlier than the true time; ok
// is false if there is no fresh reading to estimate from.
func (c *Clock) Estimate() (us int64, at time.Time, ok bool) {
	at = time.Now()
	r := c.last.Load()
	if r == nil {
		return 0, at, false
	}
	since := at.Sub(r.sent)
	if since > Fresh {
		return 0, at, false
	}
	return r.us + since.Microseconds() + 1, at, true
}

// Now returns the server's time, estimated from a reading at most Fresh
// old, or read now with Read if there is none. A reading older than half
// of Fresh is refreshed in the background; one reading at a time is on
// the wire.
func (c *Clock) Now(ctx context.Context) (time.Time, error) {
	for {
		if us, at, ok := c.Estimate(); ok {
			if r := c.last.Load(); at.Sub(r.sent) > Fresh/2 {
				c.refresh(false)
			}
			return time.UnixMicro(us), nil
		}
		wait, err := c.refresh(true)
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

// refresh starts a reading unless one is on the wire, and returns a
// channel closed when it is back. A reading that fails leaves the clock as
// it was; with wait, it is read on this goroutine and its error returned.
func (c *Clock) refresh(wait bool) (<-chan struct{}, error) {
	c.mu.Lock()
	if c.reading != nil {
		defer c.mu.Unlock()
		return c.reading, nil
	}
	done := make(chan struct{})
	c.reading = done
	c.mu.Unlock()
	var err error
	do := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sent := time.Now()
		us, rerr := c.Read(ctx)
		if rerr == nil {
			c.Observe(sent, us)
		}
		err = rerr
		c.mu.Lock()
		c.reading = nil
		c.mu.Unlock()
		close(done)
	}
	if !wait {
		go do()
		return done, nil
	}
	do()
	if err != nil {
		return nil, fmt.Errorf("read the server's clock: %w", err)
	}
	return done, nil
}
