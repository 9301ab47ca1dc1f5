package idem

import (
	"context"
	"fmt"
	"time"
)

// Polling bounds for a duplicate that waits for an owner in another
// process: the interval starts short, for work that takes milliseconds,
// and grows by half up to the maximum, which bounds how late a waiter
// learns of a result (one waiter per key and process: the others wait for
// it in the shard). With a backend that is a Watcher, the waiter is woken
// when the result is stored, and polls only to notice an owner that died.
const (
	pollMin     = time.Millisecond
	pollMax     = 20 * time.Millisecond
	pollWatched = time.Second
)

// waiter paces a duplicate that waits for an owner in another process to
// finish a key, between two looks at the backend.
type waiter struct {
	be      Backend
	key     []byte
	poll    time.Duration   // the next polling interval
	changed <-chan struct{} // closed when the watched key stops being in progress
	stop    func()          // ends the watch; nil when not watching
}

func newWaiter(be Backend, key []byte) *waiter { return &waiter{be: be, key: key, poll: pollMin} }

// wait returns when it is time to look at the key again, or with an error
// matching ErrInProgress and ctx's error when ctx ends first.
func (w *waiter) wait(ctx context.Context) error {
	if w.stop == nil {
		if wb, ok := w.be.(Watcher); ok {
			if ch, stop, err := wb.Watch(ctx, w.key); err == nil {
				w.changed, w.stop = ch, stop
			}
		}
	}
	interval := w.poll
	if w.stop != nil {
		interval = pollWatched
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	select {
	case <-t.C:
		w.poll = min(w.poll*3/2, pollMax)
	case <-w.changed:
		w.close() // watched again if the key is still in progress
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrInProgress, ctx.Err())
	}
	return nil
}

// close ends the watch, if any.
func (w *waiter) close() {
	if w.stop != nil {
		w.stop()
		w.changed, w.stop = nil, nil
	}
}
