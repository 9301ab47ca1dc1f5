package idem

import (
	"github.com/idemkit/idem/backend"
)

// The storage contract, from package backend: a [Store] runs on any
// [Backend] (Badger in [Options.Dir] by default, or Options.Backend, such
// as the Redis one of package idemredis).
type (
	// Backend is the storage engine under a [Store]: see [backend.Backend].
	Backend = backend.Backend
	// ClaimRequest is what [Backend.Claim] stores: see [backend.ClaimRequest].
	ClaimRequest = backend.ClaimRequest
	// ClaimResult is the answer of [Backend.Claim]: see [backend.ClaimResult].
	ClaimResult = backend.ClaimResult
	// Entry is what a backend holds under a key: see [backend.Entry].
	Entry = backend.Entry
	// Watcher is a backend that wakes waiting duplicates: see [backend.Watcher].
	Watcher = backend.Watcher
	// Exclusive is a backend used by one process at a time: see
	// [backend.Exclusive].
	Exclusive = backend.Exclusive
	// Clock is a backend with a clock of its own: see [backend.Clock].
	Clock = backend.Clock
)

// ErrLeaseLost is returned by [Claim.Complete], [Claim.Fail] and
// [Claim.Release] (and by a [Backend]) when the caller no longer owns its
// key: its lease lapsed and another caller took the key over, or the record
// was deleted. Nothing was stored. [Scope.Do] also cancels the context of
// its function with this cause once the loss is noticed.
var ErrLeaseLost = backend.ErrLeaseLost
