package idem

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Claim is the answer of [Scope.Claim]: either ownership of a new key, or
// the outcome stored for an existing one. An owned claim must be ended with
// exactly one of [Claim.Complete], [Claim.Fail] or [Claim.Release]; until
// then every other call for the key in this process waits ([Scope.Do]) or
// gets [ErrInProgress] ([Scope.Claim]). A Claim is safe for concurrent use.
type Claim struct {
	scope       *Scope
	found       *record // the stored record, when not owned
	key         []byte  // persisted key
	shard       *shard
	call        *call
	fingerprint []byte
	owned       bool
	size        int64 // bytes stored under key now: this claim's record, or the one it replaces

	mu       sync.Mutex // guards finished
	finished bool
}

// Owned reports whether the caller holds the key and must run the work.
func (cl *Claim) Owned() bool { return cl.owned }

// Result returns the stored outcome of a key the caller does not own, as
// [Scope.Do] would return it: the value with Replayed true, a
// [*FailureError] for a stored permanent failure, or [ErrValueTooLarge].
// For an owned claim it returns [ErrInProgress].
func (cl *Claim) Result() (Result, error) {
	if cl.owned {
		return Result{}, ErrInProgress
	}
	return cl.scope.outcome(cl.found, nil)
}

// Complete stores value as the key's result for the scope's TTL, and hands
// it to the callers waiting for the key. A value longer than the scope's
// MaxValueSize is stored as its size only (see [ErrValueTooLarge]). value
// is copied. If storing fails, the claim stays owned: the caller may retry
// Complete, or Release.
func (cl *Claim) Complete(ctx context.Context, value []byte) error {
	_, err := cl.complete(ctx, value)
	return err
}

// complete stores value and returns the record as stored.
func (cl *Claim) complete(_ context.Context, value []byte) (*record, error) {
	sc := cl.scope
	rec := &record{state: stateCompleted, size: uint64(len(value)), value: value}
	if len(value) > sc.opts.MaxValueSize {
		rec.state, rec.value = stateTooLarge, nil
	}
	stored, err := cl.finish(rec, sc.opts.TTL)
	if err == nil {
		sc.store.stats.completed.Add(1)
	}
	return stored, err
}

// Fail stores failure as the key's permanent outcome for the scope's
// FailureTTL: every retry gets a [*FailureError] with its message (cut to
// MaxValueSize bytes). If storing fails, the claim stays owned.
func (cl *Claim) Fail(_ context.Context, failure error) error {
	if failure == nil {
		return errors.New("idem: Fail called with a nil error")
	}
	sc := cl.scope
	msg := failure.Error()
	if len(msg) > sc.opts.MaxValueSize {
		msg = msg[:sc.opts.MaxValueSize]
	}
	rec := &record{state: stateFailed, size: uint64(len(msg)), value: []byte(msg)}
	_, err := cl.finish(rec, sc.opts.FailureTTL)
	if err == nil {
		sc.store.stats.failed.Add(1)
	}
	return err
}

// finish stores rec as the claim's outcome, kept for ttl, and ends the
// claim, sharing the stored record with the waiting duplicates.
func (cl *Claim) finish(rec *record, ttl time.Duration) (*record, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.owned || cl.finished {
		return nil, ErrClaimFinished
	}
	sc := cl.scope
	now := sc.store.now()
	rec.epoch = sc.store.epoch
	rec.created = now.UnixNano()
	rec.expires = rec.created + ttl.Nanoseconds()
	rec.fingerprint = cl.fingerprint
	buf, err := cl.save(rec, now)
	if err != nil {
		return nil, err
	}
	// Waiters get a record that aliases the bytes written, never the
	// caller's value slice, which the caller may reuse.
	stored := new(record)
	if err := decodeRecord(buf, stored); err != nil {
		return nil, err
	}
	cl.end(stored)
	return stored, nil
}

// Release gives the key up without an outcome: the next call for it runs
// the work again. Release after Complete, Fail or Release does nothing, so
// it is safe to defer. If deleting a persisted claim fails, the key is
// released in this process all the same, and its stored record becomes an
// orphan.
func (cl *Claim) Release(_ context.Context) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.owned || cl.finished {
		return nil
	}
	var err error
	if cl.size > 0 {
		err = cl.scope.store.io(func(be backend) error { return be.delete(cl.key) })
	}
	if err == nil {
		cl.scope.usage.remove(cl.size)
	}
	cl.scope.store.stats.released.Add(1)
	cl.end(nil)
	return err
}

// save durably writes rec as the key's record and accounts for it in the
// scope's usage; now is the time rec was made at. It returns the encoding
// written.
func (cl *Claim) save(rec *record, now time.Time) ([]byte, error) {
	sc := cl.scope
	if err := sc.store.disk.allow(false); err != nil {
		return nil, err
	}
	buf := encode(rec)
	err := sc.store.io(func(be backend) error {
		return be.set(cl.key, buf, engineExpiry(now, rec.expires))
	})
	if err != nil {
		return nil, err
	}
	size := recordSize(cl.key, len(buf))
	sc.usage.bytes.Add(size - cl.size)
	cl.size = size
	return buf, nil
}

// abandon ends the claim in this process without touching what is stored,
// after its outcome could not be stored: a persisted claim then remains as
// an orphan, which is the truth (the work ran, its result is lost).
func (cl *Claim) abandon() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.finished {
		if cl.size == 0 {
			cl.scope.usage.keys.Add(-1) // nothing stored: give the reservation back
		}
		cl.scope.store.stats.released.Add(1)
		cl.end(nil)
	}
}

// end marks the claim finished and wakes the duplicates. cl.mu is held.
func (cl *Claim) end(rec *record) {
	cl.finished = true
	cl.scope.store.stats.inFlight.Add(-1)
	cl.shard.finish(cl.key, cl.call, rec, false)
}

// run executes fn for an owned claim and records its outcome (Do).
func (cl *Claim) run(ctx context.Context, fn func(context.Context) ([]byte, error)) (Result, error) {
	returned := false
	defer func() {
		if !returned { // fn panicked: give the key back, then let the panic go on
			_ = cl.Release(context.WithoutCancel(ctx))
		}
	}()
	value, err := fn(ctx)
	returned = true

	ctx = context.WithoutCancel(ctx)
	if err != nil {
		if errors.Is(err, ErrPermanent) {
			if ferr := cl.Fail(ctx, err); ferr != nil {
				cl.abandon()
				return Result{}, errors.Join(err, ferr)
			}
			return Result{}, err
		}
		if rerr := cl.Release(ctx); rerr != nil {
			return Result{}, errors.Join(err, rerr)
		}
		return Result{}, err
	}
	rec, err := cl.complete(ctx, value)
	if err != nil {
		cl.abandon()
		return Result{Value: value}, err
	}
	return Result{
		Value:     value,
		CreatedAt: timeOf(rec.created),
		ExpiresAt: timeOf(rec.expires),
	}, nil
}
