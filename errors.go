package idem

import (
	"errors"
	"fmt"

	"github.com/idemkit/idem/backend"
)

var (
	// ErrClosed is returned by every call on a [Store] (and its scopes and
	// claims) after [Store.Close].
	ErrClosed = backend.ErrClosed

	// ErrLocked is returned by [Open] when another process, or another Store
	// in this process, holds the directory.
	ErrLocked = backend.ErrLocked

	// ErrInvalidOptions is returned by [Open] for an unusable [Options] value.
	ErrInvalidOptions = backend.ErrInvalidOptions

	// ErrInvalidScope is returned by [Store.Scope] for a bad scope name or
	// [ScopeOptions], and by the calls of a tenant view built with a bad
	// tenant id ([Scope.Tenant]).
	ErrInvalidScope = errors.New("idem: invalid scope")

	// ErrInvalidKey is returned by [Scope.Do], [Scope.Claim], [Store.Lookup] and [Store.Delete]
	// for a key that is empty or longer than [MaxKeyLen] bytes, or a
	// fingerprint longer than [MaxFingerprintLen] bytes.
	ErrInvalidKey = errors.New("idem: invalid key")

	// ErrFingerprintMismatch is returned by [Scope.Do] and [Scope.Claim] when a
	// key is reused with a different request fingerprint. The stored record
	// is left untouched.
	ErrFingerprintMismatch = errors.New("idem: key reused with a different fingerprint")

	// ErrInProgress is returned by [Scope.Claim] while another caller owns
	// the key (in this process, or in another one sharing the backend), by
	// [Store.Delete] for a key a running call owns, and (joined with the
	// context's error) by [Scope.Do] when its context ends while it waits
	// for that caller.
	ErrInProgress = errors.New("idem: key in progress")

	// ErrOutcomeUnknown is returned by [Scope.Do] and [Scope.Claim] in a scope
	// with [OrphanReport] for a key whose owner died (or lost its claim)
	// before recording an outcome. It is returned until the orphaned record
	// expires ([ScopeOptions.OrphanTTL]) or is deleted.
	ErrOutcomeUnknown = errors.New("idem: outcome unknown: the call owning this key did not finish")

	// ErrValueTooLarge is returned by [Scope.Do] and [Scope.Claim] for a key
	// whose result was larger than the scope's [ScopeOptions.MaxValueSize].
	// The first caller received its value; the record keeps only its size,
	// so retries get this error instead of running again.
	ErrValueTooLarge = errors.New("idem: stored result too large")

	// ErrScopeFull is returned by [Scope.Do] and [Scope.Claim] for a new key
	// in a scope that holds its [ScopeOptions.MaxKeys] keys or
	// [ScopeOptions.MaxBytes] bytes. Nothing is evicted to make room;
	// replays of stored keys keep working, and room comes back as records
	// expire and are collected ([Store.GC]).
	ErrScopeFull = errors.New("idem: scope full")

	// ErrPermanent matches, with errors.Is, an error marked with [Permanent]
	// and the [*FailureError] that replays of such a stored failure return.
	ErrPermanent = errors.New("idem: permanent failure")

	// ErrClaimFinished is returned by [Claim.Complete] and [Claim.Fail] on a
	// claim that was already completed, failed or released.
	ErrClaimFinished = errors.New("idem: claim already finished")

	// ErrDiskFull is returned by [Scope.Do] and [Scope.Claim] for a new key,
	// and by [Claim.Complete] and [Claim.Fail], when the store's file system
	// has less free space than [Options.MinFreeDisk] plus half the store's
	// size (half of that for completions). Nothing is written; replays keep
	// working, and writes resume once space is freed.
	ErrDiskFull = backend.ErrDiskFull

	// ErrStorageFault is returned by [Scope.Do] and [Scope.Claim] for a new
	// key, and by [Claim.Complete] and [Claim.Fail], while the store's
	// directory cannot take a new file: it was made read-only or deleted,
	// or the process has no file descriptors (or the file system no
	// inodes) left. Nothing is written; replays keep working, and writes
	// resume once the fault clears.
	ErrStorageFault = backend.ErrStorageFault

	// ErrReadOnly is returned by every call that would write to a store
	// opened with [Options.ReadOnly].
	ErrReadOnly = errors.New("idem: store opened read-only")

	// ErrCorrupt is returned when a stored record cannot be decoded. Only
	// the affected key is concerned.
	ErrCorrupt = backend.ErrCorrupt
)

// errNilContext is returned by every call that takes a context when it is
// given a nil one (the standard library's net/http does the same).
var errNilContext = errors.New("idem: nil Context")

// Permanent marks err as a permanent failure: [Scope.Do] stores it and every
// retry of the key gets a [*FailureError] with the same message, for the
// scope's [ScopeOptions.FailureTTL], instead of running again. Any error
// not marked permanent releases the key so that a retry runs again.
// Permanent(nil) returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// FailureError is the error returned for a key whose stored outcome is a
// permanent failure (see [Permanent]). Its message is the original error's.
type FailureError struct {
	// Message is the Error() text of the failure as it was stored.
	Message string
}

// Error returns the stored message.
func (e *FailureError) Error() string { return e.Message }

// Is reports that a FailureError matches [ErrPermanent].
func (e *FailureError) Is(target error) bool { return target == ErrPermanent }

// invalid wraps a sentinel with what was wrong, keeping errors.Is working.
func invalid(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
