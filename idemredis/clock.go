package idemredis

import (
	"context"
	"fmt"
	"time"
)

// Now implements [backend.Clock]: the server's time, estimated from a
// reading at most a second old (never early, late by at most the round
// trip of that reading), or read now if there is none (see
// internal/serverclock). Claims read the clock on their way. On a
// Cluster, the estimate is of one node's clock.
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	t, err := b.clock.Now(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("idemredis: %w", err)
	}
	return t, nil
}

// serverTime reads the server's clock (serverclock.Clock.Read).
func (b *Backend) serverTime(ctx context.Context) (int64, error) {
	t, err := b.rdb.Time(ctx).Result()
	return t.UnixMicro(), err
}
