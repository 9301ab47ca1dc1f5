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
	owner       uint64    // the backend's name for this claim's holder
	token       uint64    // the claim's fencing token
	size        int64     // bytes counted for key in the scope's usage
	claimedAt   time.Time // set only for an observer (Options.Observer)
	// stored is the outcome as stored, which the waiters and the cache
	// get: in the claim, so that it costs no allocation of its own.
	stored record
	// leavesNothing: abandoned, the claim leaves no record behind, so its
	// key comes off the scope's usage.
	leavesNothing bool

	mu       sync.Mutex // guards the fields below
	finished bool
	running  bool                    // Run has called the work
	lost     bool                    // finished because the backend gave the key to another owner
	renewal  *time.Timer             // renews the lease (shared backends only)
	cancel   context.CancelCauseFunc // cancels Do's function when the lease is lost
}

// Owned reports whether the caller holds the key and must run the work.
func (cl *Claim) Owned() bool { return cl.owned }

// Token returns an owned claim's fencing token (0 if not owned): successive
// owners of a key get increasing tokens, so a system the work writes to can
// refuse the writes of an owner that lost the key (see [ErrLeaseLost]) once
// it has seen a newer token.
func (cl *Claim) Token() uint64 { return cl.token }

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
//
// Complete, Fail and Release use ctx for its values only (a trace, say):
// an outcome is stored even if ctx has ended, since the work it records
// has been done.
func (cl *Claim) Complete(ctx context.Context, value []byte) error {
	if ctx == nil {
		return errNilContext
	}
	_, err := cl.complete(context.WithoutCancel(ctx), value)
	return err
}

// complete stores value and returns the record as stored. ctx is
// detached from its cancellation (see finish).
func (cl *Claim) complete(ctx context.Context, value []byte) (*record, error) {
	sc := cl.scope
	rec := &record{state: stateCompleted, size: uint64(len(value)), value: value}
	if len(value) > sc.opts.MaxValueSize {
		rec.state, rec.value = stateTooLarge, nil
	}
	stored, err := cl.finish(ctx, rec, sc.opts.TTL)
	if err == nil {
		sc.store.stats.completed.Add(1)
		cl.observeEnd(ctx, OutcomeCompleted)
	}
	return stored, err
}

// Fail stores failure as the key's permanent outcome for the scope's
// FailureTTL: every retry gets a [*FailureError] with its message (cut to
// MaxValueSize bytes). If storing fails, the claim stays owned.
func (cl *Claim) Fail(ctx context.Context, failure error) error {
	if ctx == nil {
		return errNilContext
	}
	return cl.fail(context.WithoutCancel(ctx), failure)
}

// fail stores failure. ctx is detached from its cancellation (see finish).
func (cl *Claim) fail(ctx context.Context, failure error) error {
	if failure == nil {
		return errors.New("idem: Fail called with a nil error")
	}
	sc := cl.scope
	msg := failure.Error()
	if len(msg) > sc.opts.MaxValueSize {
		msg = msg[:sc.opts.MaxValueSize]
	}
	rec := &record{state: stateFailed, size: uint64(len(msg)), value: []byte(msg)}
	_, err := cl.finish(ctx, rec, sc.opts.FailureTTL)
	if err == nil {
		sc.store.stats.failed.Add(1)
		cl.observeEnd(ctx, OutcomeFailed)
	}
	return err
}

// finish stores rec as the claim's outcome, kept for ttl, and ends the
// claim, sharing the stored record with the waiting duplicates. ctx has
// been detached from its cancellation by the caller (the outcome of work
// done is stored even if ctx has ended), once for the whole outcome.
func (cl *Claim) finish(ctx context.Context, rec *record, ttl time.Duration) (*record, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.lost {
		return nil, ErrLeaseLost
	}
	if !cl.owned || cl.finished {
		return nil, ErrClaimFinished
	}
	sc := cl.scope
	st := sc.store
	if err := st.allowWrite(false); err != nil {
		return nil, err
	}
	now, err := st.time(ctx)
	if err != nil {
		return nil, err
	}
	rec.epoch = st.epoch
	rec.created = now.UnixNano()
	rec.expires = deadline(now, ttl)
	rec.fingerprint = cl.fingerprint
	buf := encode(rec)
	err = st.io(func(be Backend) error {
		return be.Complete(ctx, cl.key, cl.owner, buf, ttl)
	})
	if errors.Is(err, ErrLeaseLost) {
		cl.lose()
	}
	if err != nil {
		return nil, err
	}
	size := recordSize(cl.key, len(buf))
	sc.usage.resized(cl.size, size)
	cl.size = size
	// Waiters get a record that aliases the bytes written, never the
	// caller's value slice, which the caller may reuse.
	cl.stored = storedRecord(rec, buf)
	cl.end(&cl.stored)
	return &cl.stored, nil
}

// Release gives the key up without an outcome: the next call for it runs
// the work again. Release after Complete, Fail or Release does nothing, so
// it is safe to defer. If deleting the claim fails, the key is released in
// this process all the same, and a persisted claim becomes an orphan.
func (cl *Claim) Release(ctx context.Context) error {
	if ctx == nil {
		return errNilContext
	}
	return cl.release(context.WithoutCancel(ctx))
}

// release gives the key up. ctx is detached from its cancellation.
func (cl *Claim) release(ctx context.Context) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.owned || cl.finished {
		return nil
	}
	st := cl.scope.store
	err := st.io(func(be Backend) error {
		return be.Release(ctx, cl.key, cl.owner)
	})
	switch {
	case err == nil:
		cl.scope.usage.left(cl.size)
	case errors.Is(err, ErrLeaseLost):
		cl.lose()
		return err
	default:
		cl.giveUp()
	}
	st.stats.released.Add(1)
	cl.observeEnd(ctx, OutcomeReleased)
	cl.end(nil)
	return err
}

// abandon ends the claim in this process after its outcome could not be
// stored: the claim's lease is given up, so that a persisted claim lapses
// into an orphan at once, which is the truth (the work ran, its result is
// lost). Nothing of it stays in memory: an exclusive backend drops its
// hold, and what is left is what the backend stored.
func (cl *Claim) abandon() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.finished {
		cl.giveUp()
		if cl.leavesNothing {
			cl.scope.usage.left(cl.size)
		}
		cl.scope.store.stats.abandoned.Add(1)
		cl.observeEnd(context.Background(), OutcomeAbandoned)
		cl.end(nil)
	}
}

// giveUp ends the claim's lease in the backend, best effort. cl.mu is held.
func (cl *Claim) giveUp() {
	_ = cl.scope.store.io(func(be Backend) error {
		return be.Renew(context.Background(), cl.key, cl.owner, 0)
	})
}

// lose ends a claim that the backend no longer gives to this owner. The
// key's usage is the new owner's now. cl.mu is held.
func (cl *Claim) lose() {
	cl.lost = true
	if cl.cancel != nil {
		cl.cancel(ErrLeaseLost)
	}
	cl.scope.usage.left(cl.size)
	cl.scope.store.stats.released.Add(1)
	cl.observeEnd(context.Background(), OutcomeLeaseLost)
	cl.end(nil)
}

// end marks the claim finished and wakes the duplicates. cl.mu is held.
func (cl *Claim) end(rec *record) {
	cl.finished = true
	if cl.renewal != nil {
		cl.renewal.Stop()
	}
	st := cl.scope.store
	st.stats.inFlight.Add(-1)
	var until int64
	if rec != nil && !st.exclusive {
		// With a shared backend a replay from the cache saves a round
		// trip, and a client's retry often comes back to the instance that
		// answered it (its connection is still open): keep the outcome,
		// which was stored just now.
		until = st.cacheUntil(rec, rec.created)
	}
	cl.shard.finish(cl.key, cl.call, rec, until, false)
}

// startRenewal keeps renewing the claim's lease while it is held, with a
// backend shared by several processes.
func (cl *Claim) startRenewal() {
	every := cl.scope.store.renewal
	if every == 0 {
		return
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.renewal = time.AfterFunc(every, cl.renew)
}

// renew extends the lease once and schedules the next renewal. A lease
// found lost ends the claim; any other failure is retried at the next turn,
// while the lease may still hold.
func (cl *Claim) renew() {
	st := cl.scope.store
	ctx, cancel := context.WithTimeout(context.Background(), st.renewal)
	defer cancel()
	err := st.io(func(be Backend) error { return be.Renew(ctx, cl.key, cl.owner, st.lease) })
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.finished {
		return
	}
	if errors.Is(err, ErrLeaseLost) {
		st.log.Warn("idem: claim lost while its work ran", "scope", cl.scope.name)
		cl.lose()
		return
	}
	if errors.Is(err, ErrClosed) {
		return // nothing more can be stored: the lease lapses
	}
	if err != nil {
		st.log.Warn("idem: lease renewal failed", "scope", cl.scope.name, "err", err)
	}
	cl.renewal.Reset(st.renewal)
}

// Run runs fn for an owned claim and records its outcome, exactly as
// [Scope.Do] does; it is the one way Do, package idemhttp and other
// adapters run the work of a claim:
//
//   - fn's value is stored with [Claim.Complete] and returned.
//   - An error marked with [Permanent] is stored with [Claim.Fail] and
//     returned.
//   - Any other error releases the key ([Claim.Release]), so that a retry
//     runs again; so does a panic, which Run then re-raises.
//   - If the outcome cannot be stored (the disk is full, the backend
//     fails, the claim was lost), the claim is abandoned: the key is not
//     released, because the work has run. Under [OrphanReport] it answers
//     [ErrOutcomeUnknown] from then on; under [OrphanRerun] a retry runs
//     again. Run returns fn's value with the storage error.
//
// fn receives a context derived from ctx that is also cancelled, with
// cause [ErrLeaseLost], if a shared backend gives the key to another
// owner while fn runs. The outcome is stored even if ctx has ended.
//
// On a claim the caller does not own, Run does not call fn and returns
// [Claim.Result]. On an owned claim that has already ended, or that Run
// was already called for, it returns [ErrClaimFinished] without calling
// fn.
func (cl *Claim) Run(ctx context.Context, fn func(context.Context) ([]byte, error)) (Result, error) {
	switch {
	case !cl.owned:
		return cl.Result()
	case ctx == nil:
		return Result{}, errNilContext
	case fn == nil:
		return Result{}, errors.New("idem: Run called with a nil function")
	}
	cl.mu.Lock()
	if cl.finished || cl.running {
		cl.mu.Unlock()
		return Result{}, ErrClaimFinished
	}
	cl.running = true
	if cl.scope.store.renewal != 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		cl.cancel = cancel
	}
	cl.mu.Unlock()
	returned := false
	defer func() {
		if !returned { // fn panicked: give the key back, then let the panic go on
			_ = cl.release(context.WithoutCancel(ctx))
		}
	}()
	value, err := fn(ctx)
	returned = true

	ctx = context.WithoutCancel(ctx)
	if err != nil {
		if errors.Is(err, ErrPermanent) {
			if ferr := cl.fail(ctx, err); ferr != nil {
				cl.abandon()
				return Result{}, errors.Join(err, ferr)
			}
			return Result{}, err
		}
		if rerr := cl.release(ctx); rerr != nil {
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
