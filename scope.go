package idem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// OrphanPolicy says what a scope does with an orphan: a key claimed by a
// call that never finished because its process died.
type OrphanPolicy uint8

const (
	// OrphanRerun treats an orphaned key as new, so the next call runs the
	// work again. Right for work that is safe to repeat after a crash (it
	// checks its own side effects, or has none outside the result).
	OrphanRerun OrphanPolicy = iota
	// OrphanReport answers ErrOutcomeUnknown for an orphaned key until the
	// record expires, so the application can reconcile before anything runs
	// again. The claim is persisted before the work starts, at the cost of
	// one more write per new key.
	OrphanReport
)

// String returns "rerun" or "report".
func (p OrphanPolicy) String() string {
	switch p {
	case OrphanRerun:
		return "rerun"
	case OrphanReport:
		return "report"
	}
	return fmt.Sprintf("OrphanPolicy(%d)", uint8(p))
}

// Scope is a key space of a [Store] with its own retention and policies,
// or a tenant's part of one (see [Scope.Tenant]). It is safe for
// concurrent use.
type Scope struct {
	store  *Store
	usage  *usage // shared by the scope's tenant views
	name   string
	tenant string
	opts   ScopeOptions
	prefix []byte // encoded (scope, tenant), the start of every key
	err    error  // why this tenant view is unusable
}

// Name returns the scope's name.
func (sc *Scope) Name() string { return sc.name }

// TenantID returns the tenant of a view made by [Scope.Tenant], or "".
func (sc *Scope) TenantID() string { return sc.tenant }

// Options returns the scope's options, defaults filled in.
func (sc *Scope) Options() ScopeOptions { return sc.opts }

// Tenant returns a view of the scope whose keys belong to tenant id alone:
// the same key used by two tenants names two independent records. Ids are
// 1 to 255 bytes; with any other id, every call on the view returns
// [ErrInvalidScope]. Tenant on a tenant view switches to the new tenant.
func (sc *Scope) Tenant(id string) *Scope {
	t := *sc
	t.tenant = id
	t.prefix = keyPrefix(sc.name, id)
	if len(id) == 0 || len(id) > MaxTenantLen {
		t.err = invalid(ErrInvalidScope, "tenant id is %d bytes, want 1 to %d", len(id), MaxTenantLen)
	}
	return &t
}

// Result is the outcome of [Scope.Do] for a key.
type Result struct {
	// Value is the result of the key's one execution. It belongs to the
	// caller.
	Value []byte
	// Replayed is true when the result comes from an earlier execution (a
	// stored record, or a concurrent duplicate that was waited for), and
	// false for the call that ran the function.
	Replayed bool
	// CreatedAt is when the outcome was stored.
	CreatedAt time.Time
	// ExpiresAt is when the record expires and the key becomes new again.
	ExpiresAt time.Time
}

// Do runs fn at most once for key while its record lives, and returns the
// outcome of that one execution to every call with the same key.
//
// On a new key, Do claims it, runs fn, stores what fn returned for the
// scope's TTL and returns it with Replayed false. On a key with a stored
// result, it returns that result with Replayed true and does not call fn. A
// call that arrives while another call in this process runs fn for the key
// waits for it and gets its result; if ctx ends first, Do returns an error
// matching both [ErrInProgress] and ctx.Err(), and the running call is not
// disturbed.
//
// fingerprint identifies the request the key was sent with (a hash of its
// payload, say). If it is not nil and differs from the one stored, Do
// returns [ErrFingerprintMismatch] without running fn. A nil fingerprint
// skips the check.
//
// If fn returns an error marked with [Permanent], the failure is stored and
// replayed as a [*FailureError]; any other error, or a panic, releases the
// key so that a retry runs fn again (the panic is re-raised). fn receives
// ctx; Do stores the outcome even if ctx has ended meanwhile.
func (sc *Scope) Do(ctx context.Context, key string, fingerprint []byte, fn func(context.Context) ([]byte, error)) (Result, error) {
	return sc.DoAppend(ctx, nil, key, fingerprint, fn)
}

// DoAppend is [Scope.Do] for hot paths: a replayed value is appended to
// dst (which may be reused from call to call) instead of a new slice, so
// that a replay served from the cache does not allocate. The value of a
// first execution is fn's own slice, as with Do.
func (sc *Scope) DoAppend(ctx context.Context, dst []byte, key string, fingerprint []byte, fn func(context.Context) ([]byte, error)) (res Result, err error) {
	if fn == nil {
		return Result{}, errors.New("idem: Do called with a nil function")
	}
	var cl *Claim
	var rec *record
	if sc.store.obs != nil { // reported however the call ends, a panic of fn's too
		start := time.Now()
		defer func() { sc.observeCall(ctx, key, start, err, cl != nil) }()
	}
	cl, rec, err = sc.acquire(ctx, key, fingerprint, true)
	switch {
	case err != nil:
		return Result{}, err
	case rec != nil:
		return sc.outcome(rec, dst)
	}
	return cl.Run(ctx, fn)
}

// Claim is the atomic check-and-set under [Scope.Do], for callers that
// cannot wrap their work in a function. In one step it either claims a new
// key for the caller, or finds the key's stored outcome:
//
//   - If the returned claim is [Claim.Owned], the caller must run the work
//     and then call [Claim.Complete], [Claim.Fail] or [Claim.Release].
//   - Otherwise [Claim.Result] returns the stored outcome, exactly as Do
//     would return it.
//
// Claim does not wait: while another caller (in this process, or in
// another one sharing the backend) owns the key it returns [ErrInProgress]. It returns [ErrFingerprintMismatch] and
// [ErrOutcomeUnknown] as Do does.
func (sc *Scope) Claim(ctx context.Context, key string, fingerprint []byte) (*Claim, error) {
	var start time.Time
	if sc.store.obs != nil {
		start = time.Now()
	}
	cl, rec, err := sc.acquire(ctx, key, fingerprint, false)
	if sc.store.obs != nil { // a found record is a replay, of a failure too
		sc.observeCall(ctx, key, start, err, cl != nil)
	}
	if err != nil {
		return nil, err
	}
	if rec != nil {
		return &Claim{scope: sc, found: rec}, nil
	}
	return cl, nil
}

// acquire is the check-and-set behind Do and Claim. It returns either a
// claim the caller owns, or the record stored for key after the
// fingerprint and orphan checks. With wait, it waits while another caller
// owns the key; without, it returns ErrInProgress.
func (sc *Scope) acquire(ctx context.Context, key string, fingerprint []byte, wait bool) (*Claim, *record, error) {
	if ctx == nil {
		return nil, nil, errNilContext
	}
	if sc.err != nil {
		return nil, nil, sc.err
	}
	if err := checkKey(key, fingerprint); err != nil {
		return nil, nil, err
	}
	st := sc.store
	if st.shut.Load() {
		return nil, nil, ErrClosed
	}
	if st.readOnly {
		return nil, nil, ErrReadOnly
	}
	// The key is built on the stack: a replay served from the cache needs
	// no more. A caller that becomes the key's owner takes a heap copy.
	// The buffer fits common keys (a UUID under a short scope and tenant);
	// a longer one spills to the heap. Room for the longest would cost
	// every call the zeroing of 577 bytes.
	var stack [stackKeyLen]byte
	k := appendKey(stack[:0], sc.prefix, key)
	sh, h := st.shards.of(k)
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		horizon, now, err := st.hitHorizon(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("scope %q: %w", sc.name, err)
		}
		cached, c, owned := sh.enter(k, h, horizon, st.recent)
		if cached != nil {
			return sc.replay(sh, cached, fingerprint)
		}
		if owned == nil {
			claimed, fp, done := sh.watch(c)
			if claimed && fingerprint != nil && !bytes.Equal(fingerprint, fp) {
				st.stats.mismatches.Add(1)
				return nil, nil, ErrFingerprintMismatch
			}
			if claimed && !wait {
				return nil, nil, ErrInProgress
			}
			if claimed {
				st.stats.coalesced.Add(1)
			}
			waitStart := time.Now()
			err := waitFor(ctx, done)
			if st.obs != nil {
				st.obs.Observe(ctx, Event{Kind: EventWait, Scope: sc.name, Duration: time.Since(waitStart)})
			}
			if err != nil {
				return nil, nil, err
			}
			if c.rec == nil {
				continue // released: claim it ourselves
			}
			return sc.replay(sh, c.rec, fingerprint)
		}
		if now.IsZero() { // the claim's creation, and what the backend's record is checked against
			if now, err = st.time(ctx); err != nil {
				sh.finish(owned, c, nil, 0, false)
				return nil, nil, fmt.Errorf("scope %q: %w", sc.name, err)
			}
		}
		return sc.take(ctx, owned, sh, c, fingerprint, wait, now)
	}
}

// take claims k in the backend for the caller, who owns call c on it in
// this process, or finds the record that holds k. A key held by an owner
// in another process is waited for (with wait; see waiter).
//
// When the scope is full or the disk nearly so, take only looks: a stored
// outcome is still replayed, but a new key gets the refusal. now is when
// the caller found the key free in this process: the claim's creation.
func (sc *Scope) take(ctx context.Context, k []byte, sh *shard, c *call, fingerprint []byte, wait bool, now time.Time) (*Claim, *record, error) {
	st := sc.store
	refusal := sc.admit()
	reserved := refusal == nil
	fail := func(err error) (*Claim, *record, error) {
		if reserved {
			sc.usage.unreserve()
		}
		sh.finish(k, c, nil, 0, false)
		return nil, nil, err
	}
	fingerprint = bytes.Clone(fingerprint)
	req := ClaimRequest{
		Value: encode(&record{
			state:       stateInProgress,
			epoch:       st.epoch,
			created:     now.UnixNano(),
			expires:     deadline(now, sc.opts.OrphanTTL),
			fingerprint: fingerprint,
		}),
		Lease:    st.lease,
		TTL:      max(sc.opts.OrphanTTL, st.lease),
		Takeover: sc.opts.Orphans == OrphanRerun,
		// Under OrphanRerun a crash simply makes the key new again, so the
		// default backend may keep the claim in memory; under OrphanReport
		// it is persisted before the work starts, to leave a trace.
		Volatile: sc.opts.Orphans == OrphanRerun,
	}
	var w *waiter // set once the key is found held elsewhere
	var waitStart time.Time
	defer func() {
		if w != nil {
			w.close()
			if st.obs != nil {
				st.obs.Observe(ctx, Event{Kind: EventWait, Scope: sc.name, Duration: time.Since(waitStart)})
			}
		}
	}()
	for {
		var res ClaimResult
		err := st.io(func(be Backend) (err error) {
			if !reserved {
				res.Prev, res.Found, err = be.Get(ctx, k)
				return err
			}
			res, err = be.Claim(ctx, k, req)
			return err
		})
		if err != nil && w != nil && ctx.Err() != nil {
			return fail(fmt.Errorf("%w: %w", ErrInProgress, ctx.Err())) // gave up waiting
		}
		if err != nil {
			return fail(fmt.Errorf("scope %q: %w", sc.name, err))
		}
		if res.Owner != 0 {
			if res.Found && res.Prev.Owner != 0 {
				st.stats.orphans.Add(1) // a lapsed claim, taken over
				sc.observeOrphan(ctx)
			}
			return sc.claimed(k, sh, c, fingerprint, req, res), nil, nil
		}
		if !res.Found {
			return fail(refusal) // only looking, and nothing is stored
		}
		rec := new(record)
		if err := decodeRecord(res.Prev.Value, rec); err != nil {
			return fail(fmt.Errorf("scope %q: %w", sc.name, err))
		}
		held := res.Prev.Owner != 0 && !res.Prev.Lapsed
		if rec.expired(now) && !held {
			if !reserved {
				return fail(refusal)
			}
			req.Stale = res.Prev.Value // dead by our clock: replace it
			continue
		}
		if reserved {
			sc.usage.unreserve() // the key is stored already
			reserved = false
		}
		if !held {
			if res.Prev.Owner != 0 {
				st.stats.orphans.Add(1) // kept under OrphanReport
				sc.observeOrphan(ctx)
			}
			sh.finish(k, c, rec, st.cacheUntil(rec, now.UnixNano()), true)
			return sc.replay(sh, rec, fingerprint)
		}
		// A live owner in another process runs the work, however old its
		// record looks: wait for it, paced.
		if fingerprint != nil && !bytes.Equal(fingerprint, rec.fingerprint) {
			st.stats.mismatches.Add(1)
			return fail(ErrFingerprintMismatch)
		}
		if !wait {
			return fail(ErrInProgress)
		}
		if w == nil {
			st.stats.coalesced.Add(1)
			w, waitStart = newWaiter(st.be, k), time.Now()
		}
		if err := w.wait(ctx); err != nil {
			return fail(err)
		}
		if now, err = st.time(ctx); err != nil {
			return fail(fmt.Errorf("scope %q: %w", sc.name, err))
		}
		if !reserved { // the owner may release the key: be ready to claim it
			refusal = sc.admit()
			reserved = refusal == nil
		}
	}
}

// claimed makes the caller, who owns call c on key k in this process and
// has just claimed it in the backend (req, res), the holder of the key.
func (sc *Scope) claimed(k []byte, sh *shard, c *call, fingerprint []byte, req ClaimRequest, res ClaimResult) *Claim {
	st := sc.store
	size := recordSize(k, len(req.Value))
	sc.usage.entered(size, res.Found, recordSize(k, len(res.Prev.Value)))
	sh.claim(c, fingerprint)
	cl := &Claim{scope: sc, key: k, shard: sh, call: c, fingerprint: fingerprint, owned: true,
		owner: res.Owner, token: res.Token, size: size,
		// Only a volatile claim of a new key on an exclusive backend leaves
		// nothing stored if it is abandoned.
		leavesNothing: st.exclusive && req.Volatile && !res.Found}
	if st.obs != nil {
		cl.claimedAt = time.Now() // for the execution's duration
	}
	st.stats.inFlight.Add(1)
	st.stats.claims.Add(1)
	cl.startRenewal()
	return cl
}

// admit reserves room for one more key in the scope (see usage.reserve), or
// returns why it cannot: ErrDiskFull or ErrScopeFull.
func (sc *Scope) admit() error {
	if err := sc.store.allowWrite(true); err != nil {
		return err
	}
	if !sc.usage.reserve(sc.opts.MaxKeys, sc.opts.MaxBytes) {
		return fmt.Errorf("%w: scope %q holds %d keys and %d bytes (caps %d and %d)",
			ErrScopeFull, sc.name, sc.usage.keys.Load(), sc.usage.bytes.Load(), sc.opts.MaxKeys, sc.opts.MaxBytes)
	}
	return nil
}

// replay returns rec, a record of a key in shard sh, as the caller's
// outcome if it passes check, and counts it in Stats.Replays.
func (sc *Scope) replay(sh *shard, rec *record, fingerprint []byte) (*Claim, *record, error) {
	if err := sc.check(rec, fingerprint); err != nil {
		return nil, nil, err
	}
	sh.replays.Add(1)
	return nil, rec, nil
}

// check applies the fingerprint and orphan rules to a stored record.
func (sc *Scope) check(rec *record, fingerprint []byte) error {
	if fingerprint != nil && !bytes.Equal(fingerprint, rec.fingerprint) {
		sc.store.stats.mismatches.Add(1)
		return ErrFingerprintMismatch
	}
	if rec.state == stateInProgress {
		return ErrOutcomeUnknown
	}
	return nil
}

// outcome is what Do returns for a key whose record passed check; a value
// is appended to dst.
func (sc *Scope) outcome(rec *record, dst []byte) (Result, error) {
	res := Result{
		Replayed:  true,
		CreatedAt: timeOf(rec.created),
		ExpiresAt: timeOf(rec.expires),
	}
	switch rec.state {
	case stateCompleted:
		if dst == nil { // Do: a copy of its own, in one step (makeslicecopy: no zeroing, no growslice)
			stored := rec.value // makeslicecopy wants plain variables on both sides
			value := make([]byte, len(stored))
			copy(value, stored)
			res.Value = value
		} else {
			res.Value = append(dst, rec.value...)
		}
		return res, nil
	case stateFailed:
		return res, &FailureError{Message: string(rec.value)}
	default: // stateTooLarge
		return res, fmt.Errorf("%w: %d bytes, scope limit %d", ErrValueTooLarge, rec.size, sc.opts.MaxValueSize)
	}
}

// encode returns the encoding of rec.
func encode(rec *record) []byte { return appendRecord(make([]byte, 0, rec.encodedLen()), rec) }
