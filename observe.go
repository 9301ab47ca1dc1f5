package idem

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Observer is told what the store does, for metrics, traces and hooks of
// your own (packages idemotel and idemprom are two). Observe runs on the
// goroutine of the call it reports (a lost lease, on the store's renewal
// goroutine), sometimes under the store's locks, so it must be quick and
// must not call back into the store. A store without an Observer pays one
// nil check per event.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// StoreObserver is an Observer that wants the store it observes, for
// gauges of its Stats: Open hands it the store once it is open.
type StoreObserver interface {
	Observer
	ObserveStore(st *Store)
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventCall: a Do, DoAppend or Claim returned. Outcome says how;
	// Duration is the whole call (for Do, the execution included).
	EventCall EventKind = iota + 1
	// EventExecution: a claim ended, its work done or given up. Outcome
	// is completed, failed, released, abandoned or lease_lost; Duration is
	// from the claim to its end.
	EventExecution
	// EventWait: a call waited for another caller's execution of its key,
	// in this process or another one; Duration is the wait. A call that
	// waits more than once (the other caller released the key, and a third
	// claimed it) reports each wait.
	EventWait
	// EventOrphan: a claim left by an owner that died (or lost its lease)
	// was found; Policy is the scope's.
	EventOrphan
	// EventCollection: the collector ran. Reclaimed and ReclaimedBytes are
	// the records it deleted; Duration is its run. Scope is empty.
	EventCollection
)

func (k EventKind) String() string {
	switch k {
	case EventCall:
		return "call"
	case EventExecution:
		return "execution"
	case EventWait:
		return "wait"
	case EventOrphan:
		return "orphan"
	case EventCollection:
		return "collection"
	}
	return "unknown"
}

// Outcome is how a call or an execution ended, as a label: a short
// snake_case word, the same in every backend.
type Outcome string

// Outcomes of EventCall.
const (
	OutcomeExecuted   Outcome = "executed"        // the key was new: the caller runs (or ran) the work
	OutcomeReplayed   Outcome = "replayed"        // a stored outcome was returned (a stored failure too)
	OutcomeMismatch   Outcome = "mismatch"        // ErrFingerprintMismatch
	OutcomeInProgress Outcome = "in_progress"     // ErrInProgress: another caller runs the work
	OutcomeUnknown    Outcome = "outcome_unknown" // ErrOutcomeUnknown: an orphan under OrphanReport
	OutcomeScopeFull  Outcome = "scope_full"      // ErrScopeFull
	OutcomeDiskFull   Outcome = "disk_full"       // ErrDiskFull
	OutcomeInvalid    Outcome = "invalid"         // a bad key, tenant or argument
	OutcomeCanceled   Outcome = "canceled"        // the caller's context ended
	OutcomeError      Outcome = "error"           // the backend failed, or the store is closed
)

// Outcomes of EventExecution.
const (
	OutcomeCompleted Outcome = "completed"  // a result was stored
	OutcomeFailed    Outcome = "failed"     // a permanent failure was stored
	OutcomeReleased  Outcome = "released"   // given up without an outcome: the next call runs again
	OutcomeAbandoned Outcome = "abandoned"  // the work ran but its outcome could not be stored
	OutcomeLeaseLost Outcome = "lease_lost" // another owner took the key over
)

// Event is one thing the store did. It names the scope but, unless
// Options.ObserveKeys is set, neither the key nor the tenant: labels made
// of keys would grow without bound, and keys may be private.
type Event struct {
	Kind     EventKind
	Scope    string
	Outcome  Outcome
	Duration time.Duration
	// Policy is the scope's orphan policy, for EventOrphan.
	Policy OrphanPolicy
	// Reclaimed and ReclaimedBytes count what a collection deleted.
	Reclaimed, ReclaimedBytes int64
	// Key and Tenant are set on EventCall with Options.ObserveKeys only.
	// Key is a copy of the call's key (one allocation per observed call),
	// which the observer may keep.
	Key, Tenant string
}

// callOutcome is the Outcome of a call that returned err, having claimed
// the key (claimed: whatever the work then did) or not.
func callOutcome(err error, claimed bool) Outcome {
	if claimed {
		return OutcomeExecuted
	}
	return OutcomeOf(err)
}

// OutcomeOf names the outcome of a call (Do, Claim, Claim.Result) that
// did not run the work and returned err: replayed for nil or a stored
// failure, and otherwise the refusal (mismatch, in_progress, …), as
// EventCall reports it. Adapters (idemhttp, say) use it for their own
// reports.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeReplayed
	}
	for _, o := range []struct {
		target  error
		outcome Outcome
	}{
		{ErrValueTooLarge, OutcomeReplayed}, // the work is done; its result was too large to keep
		{ErrFingerprintMismatch, OutcomeMismatch},
		{ErrOutcomeUnknown, OutcomeUnknown},
		{ErrInProgress, OutcomeInProgress},
		{ErrScopeFull, OutcomeScopeFull},
		{ErrDiskFull, OutcomeDiskFull},
		{ErrInvalidKey, OutcomeInvalid},
		{ErrInvalidScope, OutcomeInvalid},
		{context.Canceled, OutcomeCanceled},
		{context.DeadlineExceeded, OutcomeCanceled},
	} {
		if errors.Is(err, o.target) {
			return o.outcome
		}
	}
	var failure *FailureError
	if errors.As(err, &failure) {
		return OutcomeReplayed
	}
	return OutcomeError
}

// observeCall reports a call on key that began at start.
func (sc *Scope) observeCall(ctx context.Context, key string, start time.Time, err error, claimed bool) {
	e := Event{Kind: EventCall, Scope: sc.name, Outcome: callOutcome(err, claimed), Duration: time.Since(start)}
	if sc.store.observeKeys {
		// A copy, which observers may keep: the call itself keeps no
		// reference to key, so a key converted from bytes for the call
		// can stay on the caller's stack.
		e.Key, e.Tenant = strings.Clone(key), sc.tenant
	}
	sc.store.obs.Observe(ctx, e)
}

// observeEnd reports the end of the claim's execution.
func (cl *Claim) observeEnd(ctx context.Context, outcome Outcome) {
	if obs := cl.scope.store.obs; obs != nil {
		obs.Observe(ctx, Event{Kind: EventExecution, Scope: cl.scope.name, Outcome: outcome, Duration: time.Since(cl.claimedAt)})
	}
}

// observeOrphan reports an orphan found in the scope.
func (sc *Scope) observeOrphan(ctx context.Context) {
	if obs := sc.store.obs; obs != nil {
		obs.Observe(ctx, Event{Kind: EventOrphan, Scope: sc.name, Policy: sc.opts.Orphans})
	}
}
