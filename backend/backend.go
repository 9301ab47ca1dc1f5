// Package backend is the contract between an idem.Store and the storage
// engine under it, the way database/sql/driver stands beside database/sql:
// what an engine implements ([Backend]), the optional capabilities the
// store discovers by type assertion, and the errors engines return. The
// store relies on nothing else; package backendtest checks an engine
// against every rule written here.
//
// The engines in this module are idembadger (the default, embedded) and
// idemredis (shared by several processes).
package backend

import (
	"bytes"
	"context"
	"time"
)

// Backend is the storage engine under an idem.Store: a map from keys to
// entries that also decides, atomically, who owns a key. The store keeps
// its records in entries as opaque bytes; the backend knows only whether
// an entry is in progress (held by an owner under a lease) or finished.
//
// Methods are called concurrently, also for one key. Keys are at most
// 1 KiB, and every key the store passes starts with the byte 0x01: a
// backend may keep data of its own under keys that start otherwise. Slices
// passed in must not be modified, nor kept after the call returns (but see
// ClaimRequest.Value), and slices returned belong to the caller.
type Backend interface {
	// Claim atomically makes the caller the owner of key, storing
	// req.Value as its in-progress entry, if key holds no entry, or holds
	// one that req allows to replace (see ClaimRequest). Otherwise it
	// leaves key alone and reports the entry there. A claim that returns
	// an error was not made: if it took effect all the same (ctx ended
	// while it was on the wire), the backend gives it back as soon as it
	// learns of it, so that nobody finds the key held by a caller that
	// has left.
	Claim(ctx context.Context, key []byte, req ClaimRequest) (ClaimResult, error)
	// Renew extends owner's lease on key to lease from now; a lease of 0
	// ends it at once, so that the entry is lapsed. It returns
	// ErrLeaseLost if key is not held by owner.
	Renew(ctx context.Context, key []byte, owner uint64, lease time.Duration) error
	// Complete durably replaces owner's in-progress entry with the
	// finished value, kept for ttl (until deleted, by an Exclusive
	// backend). It returns ErrLeaseLost, changing
	// nothing, if key is not held by owner. An owner whose lease lapsed
	// may still complete as long as nobody has taken the key over.
	Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error
	// Release durably deletes owner's in-progress entry, or returns
	// ErrLeaseLost if key is not held by owner.
	Release(ctx context.Context, key []byte, owner uint64) error
	// Get returns the entry under key; found is false if there is none or
	// it has expired (never, on an Exclusive backend: see there).
	Get(ctx context.Context, key []byte) (e Entry, found bool, err error)
	// Delete durably removes the entry under key, whatever it holds. An
	// owner of a deleted in-progress entry loses it (ErrLeaseLost).
	Delete(ctx context.Context, key []byte) error
	// Scan calls fn for every live entry whose key starts with prefix, in
	// no particular order, and stops at fn's first error. key and e are
	// valid only during the call.
	Scan(ctx context.Context, prefix []byte, fn func(key []byte, e Entry) error) error
	// Close releases the backend's resources.
	Close() error
}

// ClaimRequest is what [Backend.Claim] stores, and when it may replace an
// existing entry.
type ClaimRequest struct {
	// Value is the in-progress entry's content. Unlike the other slices
	// passed in, it may be kept: the store neither reads nor modifies it
	// once a claim has taken it, so a backend holding claims in memory
	// need not copy it. The backend must not modify it either.
	Value []byte
	// Lease is how long the claim holds the key without being renewed
	// (not used by an Exclusive backend).
	Lease time.Duration
	// TTL is how long the entry is kept if it is never completed or
	// released; at least Lease (not used by an Exclusive backend).
	TTL time.Duration
	// Takeover allows replacing an in-progress entry whose lease has
	// lapsed: its owner is presumed dead.
	Takeover bool
	// Stale, if not nil, allows replacing a finished or lapsed entry that
	// holds exactly these bytes: one the caller found expired by its own
	// clock.
	Stale []byte
	// Volatile says the claim need not outlive the caller's process: a
	// backend used by that process alone may keep it in memory (where
	// Scan need not see it). Other backends store it like any claim.
	Volatile bool
}

// Replaces reports whether the request may replace the entry e: a lapsed
// claim with Takeover, or a finished or lapsed entry holding exactly
// Stale.
func (req ClaimRequest) Replaces(e Entry) bool {
	dead := e.Owner == 0 || e.Lapsed
	return e.Lapsed && req.Takeover || dead && req.Stale != nil && bytes.Equal(req.Stale, e.Value)
}

// ClaimResult is the answer of [Backend.Claim].
type ClaimResult struct {
	// Owner identifies the caller as the key's holder in Renew, Complete
	// and Release; it is 0 if the claim was refused. Owners are never 0,
	// and successive owners of one key differ.
	Owner uint64
	// Token is the claim's fencing token: successive owners of one key
	// get increasing tokens, so a system they write to can refuse a stale
	// owner's writes. A backend may use its owners as tokens.
	Token uint64
	// Found reports that key held an entry, Prev: the one that refused the
	// claim, or the one it replaced.
	Found bool
	Prev  Entry
}

// Entry is what a backend holds under a key.
type Entry struct {
	// Value is the content stored by Claim or Complete.
	Value []byte
	// Owner is the in-progress entry's owner, or 0 for a finished entry.
	Owner uint64
	// Lapsed reports an in-progress entry whose lease has run out (by the
	// backend's clock): its owner is presumed dead.
	Lapsed bool
}

// Watcher is implemented by a backend shared by several processes that can
// tell a duplicate waiting in one process when the owner in another
// finishes; without it, the store polls the backend while it waits.
type Watcher interface {
	// Watch returns a channel that is closed soon after key stops being
	// in progress (it is completed or released; it may also be closed
	// early, and the store then looks again), and a function that stops
	// watching. A failure to watch is not fatal: the store polls instead.
	Watch(ctx context.Context, key []byte) (changed <-chan struct{}, stop func(), err error)
}

// Exclusive is implemented by a backend that only one process uses at a
// time, such as the default Badger backend, whose directory lock keeps
// every other process out. Its claims belong to that process rather than
// to a lease: a claim stays held however long its work runs, until its
// owner completes or releases it or gives it up with a Renew of lease 0;
// ClaimRequest.Lease is not used, and no clock lapses or expires a held
// claim. When the process ends, its claims end with it: a persisted claim
// is lapsed from the next open of the storage on, which Epoch counts.
//
// Nor does it expire entries by a clock of its own: it keeps every entry
// until it is deleted or replaced, and the store, which dates each record
// by its own clock (idem.Options.Now), decides when one has expired and deletes
// it in its collections. TTLs passed to it are not used.
//
// The store renews no lease on such a backend, and caches its records
// without CacheMaxAge, since no other process changes them.
type Exclusive interface {
	// Epoch numbers the opens of the backend's storage, counting from 1.
	Epoch() uint64
}

// Clock is implemented by a backend shared by several processes that
// expires entries by a clock of its own, such as a server's. The store
// then dates its records by that clock rather than by its process's
// (unless idem.Options.Now is set), so that the processes' clock skew neither
// shortens nor lengthens a record's life.
type Clock interface {
	// Now returns the backend's time, reading it (with ctx) if needed. It
	// may be an estimate between readings; its error bound is the
	// implementation's to document.
	Now(ctx context.Context) (time.Time, error)
}
