package idemredis

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// watchers wakes the duplicates that wait on this instance for a key
// owned on another: the key's entry is marked watched, and the script
// that completes or releases a watched entry publishes its key on the
// channel prefix + "done", to which the backend subscribes once, on the
// first watch.
type watchers struct {
	mu      sync.Mutex
	sub     *redis.PubSub              // nil until the first watch
	waiting map[string][]chan struct{} // by Redis key
}

// Watch implements [backend.Watcher].
func (b *Backend) Watch(ctx context.Context, key []byte) (<-chan struct{}, func(), error) {
	if err := b.subscribe(ctx); err != nil {
		return nil, nil, err
	}
	rk := b.redisKey(key)
	ch := make(chan struct{})
	w := &b.watch
	w.mu.Lock()
	w.waiting[rk] = append(w.waiting[rk], ch)
	w.mu.Unlock()
	stop := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		chans := w.waiting[rk]
		for i, c := range chans {
			if c == ch {
				chans = append(chans[:i], chans[i+1:]...)
				break
			}
		}
		if len(chans) == 0 {
			delete(w.waiting, rk)
		} else {
			w.waiting[rk] = chans
		}
	}
	// Marked after subscribing: a completion from now on is heard.
	reply, err := b.pipe.run(ctx, &watchOp, rk)
	if err != nil {
		stop()
		return nil, nil, err
	}
	if reply != int64(1) {
		b.wake(rk) // finished already: look again now
	}
	return ch, stop, nil
}

// subscribe starts listening on the channel, once.
func (b *Backend) subscribe(ctx context.Context) error {
	w := &b.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sub != nil {
		return nil
	}
	sub := b.rdb.Subscribe(ctx, b.prefix+"done")
	if _, err := sub.Receive(ctx); err != nil { // the confirmation
		_ = sub.Close()
		return fmt.Errorf("idemredis: subscribe: %w", err)
	}
	w.sub = sub
	w.waiting = make(map[string][]chan struct{})
	go func() {
		for msg := range sub.Channel() {
			b.wake(msg.Payload)
		}
	}()
	return nil
}

// wake closes the channels of the duplicates waiting for the Redis key rk.
func (b *Backend) wake(rk string) {
	w := &b.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.waiting[rk] {
		close(c)
	}
	delete(w.waiting, rk)
}

// stopWatching ends the subscription.
func (b *Backend) stopWatching() {
	w := &b.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sub != nil {
		_ = w.sub.Close()
	}
}
