// Package idem is an embedded, persistent idempotency store: it makes a
// retried request, a redelivered message or a double-clicked button run its
// side effect once, and gives every retry the same result back.
//
// # Use
//
// Open a [Store] on a directory, take a [Scope] for each kind of operation,
// and wrap the operation in [Scope.Do] with the client's idempotency key:
//
//	st, err := idem.Open(idem.Options{Dir: "/var/lib/orders/idem"})
//	defer st.Close()
//	payments, err := st.Scope("payments", idem.ScopeOptions{TTL: 24 * time.Hour})
//	res, err := payments.Tenant(accountID).Do(ctx, key, fingerprint, func(ctx context.Context) ([]byte, error) {
//		return chargeCard(ctx, req)
//	})
//	// res.Value is the first execution's result; res.Replayed tells a replay.
//
// [Scope.Claim] is the same check-and-set as a step of its own, for work
// that does not fit in a function: the caller owns the key until it calls
// [Claim.Complete], [Claim.Fail] or [Claim.Release], or hands the work to
// [Claim.Run], which records its outcome exactly as Do does (Do and the
// idemhttp middleware go through it).
//
// # Keys
//
// A record is named by its scope, an optional tenant ([Scope.Tenant]) and
// the key. The three are stored as a length-prefixed tuple, so no choice of
// bytes makes two of them collide. Keys are 1 to [MaxKeyLen] bytes, tenant
// ids 1 to [MaxTenantLen] bytes, scope names 1 to [MaxScopeLen] bytes of
// [a-z0-9._-]. A fingerprint of the request (a hash of its payload) may be
// passed with each key: a key reused with another fingerprint gets
// [ErrFingerprintMismatch] instead of somebody else's result.
//
// # Outcomes
//
// A result is stored for the scope's TTL and replayed. A failure marked with
// [Permanent] is stored for the scope's FailureTTL and replayed as a
// [*FailureError]. Any other error, or a panic, releases the key so that a
// retry runs again. A result larger than the scope's MaxValueSize reaches
// its caller, and retries get [ErrValueTooLarge] rather than a second run.
// An outcome that cannot be stored leaves the key claimed, never released:
// the work ran, so a retry runs again only under [OrphanRerun]. Every read
// checks the record's exact deadline against the store's clock
// ([Options.Now], or the backend's own clock: see [Clock]); retention is at
// most [MaxTTL].
//
// # Concurrency
//
// A Store, its Scopes and Claims are safe for concurrent use. Calls for the
// same key in one process are serialised by the key's shard: while one
// runs the work, duplicates wait for it ([Scope.Do]) and receive its result,
// or are told [ErrInProgress] ([Scope.Claim]). No lock is held while the
// work runs or while the disk is written.
//
// # Storage
//
// Every record expires: results after the scope's TTL, stored failures
// after its FailureTTL, orphans after its OrphanTTL. A background collector
// ([Options.GCInterval]) deletes expired records and has the engine give
// their space back; [Store.GC] runs one collection now. A scope may be
// capped ([ScopeOptions.MaxKeys], [ScopeOptions.MaxBytes]): a new key
// beyond the cap gets [ErrScopeFull], and nothing live is ever evicted.
// [Store.Stats] reports usage per scope and what the collector reclaimed.
// New keys get [ErrDiskFull] when the file system runs low
// ([Options.MinFreeDisk]), before Badger could fail on a full disk, and
// writes get [ErrStorageFault] while the directory cannot take a new file.
//
// # Operations
//
// [Store.Records], [Store.Lookup] and [Store.Delete] let operators see and
// fix keys; [Store.AdminHandler] serves them over HTTP from the process
// that owns the store, and [Options.ReadOnly] opens a stopped store
// without changing it. The idem command (cmd/idem) uses both.
//
// # Crashes
//
// A directory is used by one process at a time ([ErrLocked]). Every [Open]
// starts a new epoch, so an in-progress record from an earlier one is known
// to be orphaned by a process that died mid-work, without waiting for a
// lease; a claim of the live process needs no lease, and holds however
// long its work runs ([Exclusive]). A scope's [OrphanPolicy] decides what happens to it: run again
// ([OrphanRerun], the default) or answer [ErrOutcomeUnknown] until the
// record expires ([OrphanReport]). An acknowledged outcome survives the
// process being killed; with [Options.SyncWrites] it also survives power
// loss.
//
// # Many instances
//
// The storage engine is a [Backend]: Badger in Dir by default, or one
// that several processes share, such as the Redis one in package
// idemredis ([Options.Backend]). Everything above it works the same. A
// shared backend arbitrates claims itself, atomically; a claim carries an
// owner and a lease on the backend's clock, which the store renews
// while the work runs ([Options.Lease]). An owner that dies stops renewing
// and its claim becomes an orphan once the lease lapses; an owner that
// stalls past its lease and is taken over can no longer store its outcome
// ([ErrLeaseLost]; [Claim.Token] is its fencing token). A duplicate on
// another instance waits for the running call: woken when it finishes if
// the backend is a [Watcher] (idemredis uses pub/sub), and polling the
// backend otherwise. Records are dated by the backend's clock when it has
// one ([Clock]). Replays may come from this process's cache for at most
// [Options.CacheMaxAge]. Package backendtest checks a backend against the
// contract.
package idem
