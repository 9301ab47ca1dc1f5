// Package retry holds what the client halves (idemhttp.Transport and
// idemgrpc's client interceptor) share: the key of a logical call and the
// wait before each retry of it.
package retry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"time"
)

// Backoff is the wait before retry n (after attempt n), with full
// jitter: a random time up to base·2^(n-1), at most ceiling. Waits drawn
// at random keep clients that failed together from retrying together.
func Backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return mrand.N(min(d, ceiling) + 1)
}

// Wait is the wait before retry n (see Backoff), at least hint (what the
// answer asked for: Retry-After, RetryInfo), and whether to wait at all:
// not when that is longer than ceiling or than ctx has left, and the
// caller then returns the answer it has.
func Wait(ctx context.Context, n int, base, ceiling, hint time.Duration) (time.Duration, bool) {
	wait := max(Backoff(n, base, ceiling), hint)
	if deadline, ok := ctx.Deadline(); wait > ceiling || ok && time.Until(deadline) < wait {
		return 0, false
	}
	return wait, true
}

// Sleep waits d, or returns ctx's error if it ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// UUIDv4 returns a random (version 4) UUID from crypto/rand: 122 random
// bits, so that keys of different calls never meet.
func UUIDv4() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Or is v, or def when v is not positive: the defaults of zero options.
func Or[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
