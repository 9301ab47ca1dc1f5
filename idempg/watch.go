package idempg

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// watchers wakes the duplicates that wait on this instance for a key
// owned on another: the key's row is marked watched, and the statement
// that completes or releases a watched row notifies the table's channel
// with the key (in hex), to which the backend listens on a connection of
// its own, opened on the first watch. Unwatched rows notify nothing, so
// the common path pays nothing for it.
type watchers struct {
	mu      sync.Mutex
	started bool
	ready   chan struct{}              // closed once LISTEN has run the first time
	err     error                      // why the first LISTEN failed
	stop    context.CancelFunc         // ends the listener
	done    chan struct{}              // closed when it has ended
	waiting map[string][]chan struct{} // by key
}

// listenRetry is how long the listener waits before it connects again.
const listenRetry = time.Second

// Watch implements [backend.Watcher].
func (b *Backend) Watch(ctx context.Context, key []byte) (<-chan struct{}, func(), error) {
	if err := b.listen(ctx); err != nil {
		return nil, nil, err
	}
	w := &b.watch
	k := string(key)
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiting[k] = append(w.waiting[k], ch)
	w.mu.Unlock()
	stop := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		chans := w.waiting[k]
		for i, c := range chans {
			if c == ch {
				chans = append(chans[:i], chans[i+1:]...)
				break
			}
		}
		if len(chans) == 0 {
			delete(w.waiting, k)
		} else {
			w.waiting[k] = chans
		}
	}
	// Marked after listening: a completion from now on is heard.
	var n int64
	if err := b.pool.QueryRow(ctx, b.sql.watch, key).Scan(&n); err != nil {
		stop()
		return nil, nil, b.fail("watch", err)
	}
	if n == 0 {
		b.wake(k) // finished already: look again now
	}
	return ch, stop, nil
}

// listen starts the listener once and waits until it listens.
func (b *Backend) listen(ctx context.Context) error {
	w := &b.watch
	w.mu.Lock()
	if !w.started {
		w.started = true
		w.ready = make(chan struct{})
		w.done = make(chan struct{})
		w.waiting = make(map[string][]chan struct{})
		lctx, cancel := context.WithCancel(context.Background())
		w.stop = cancel
		go b.listener(lctx)
	}
	ready := w.ready
	w.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// listener listens on the channel until ctx ends, connecting again after
// a lost connection. While it is away the waiters poll.
func (b *Backend) listener(ctx context.Context) {
	w := &b.watch
	defer close(w.done)
	first := true
	for ctx.Err() == nil {
		err := b.listenOnce(ctx, func() {
			w.mu.Lock()
			w.err = nil
			w.mu.Unlock()
			if first {
				first = false
				close(w.ready)
			}
		})
		if first { // never listened: the first watchers poll, and so do the next
			first = false
			w.mu.Lock()
			w.err = fmt.Errorf("idempg: listen: %w", err)
			w.mu.Unlock()
			close(w.ready)
		}
		select {
		case <-ctx.Done():
		case <-time.After(listenRetry):
		}
	}
}

// listenOnce connects, listens, calls listening, and wakes the waiters of
// every key notified, until the connection fails or ctx ends.
func (b *Backend) listenOnce(ctx context.Context, listening func()) error {
	conn, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		key, err := hex.DecodeString(n.Payload)
		if err == nil {
			b.wake(string(key))
		}
	}
}

// wake closes the channels of the duplicates waiting for key.
func (b *Backend) wake(key string) {
	w := &b.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.waiting[key] {
		close(c)
	}
	delete(w.waiting, key)
}

// stopWatching ends the listener and waits for it.
func (b *Backend) stopWatching() {
	w := &b.watch
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if started {
		w.stop()
		<-w.done
	}
}
