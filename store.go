package idem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures [Open]. The zero value is not usable on its own: set
// Dir, or InMemory for a store that lives and dies with the process.
type Options struct {
	// Dir is the directory holding the store. It is created if missing and
	// may be opened by one Store at a time (see [ErrLocked]).
	Dir string

	// InMemory keeps everything in memory, for tests and for work that need
	// not survive the process. Dir must then be empty.
	InMemory bool

	// SyncWrites makes every claim and completion reach stable storage
	// before it is acknowledged, so that it survives power loss and kernel
	// crashes. False (the default) survives the process being killed.
	SyncWrites bool

	// Logger receives the store's and Badger's logs. Nil discards them.
	Logger *slog.Logger

	// Shards is the number of shards that in-flight calls are spread over,
	// a power of two. Zero means 64.
	Shards int

	// Now is the clock that every expiry is measured with. Nil means
	// time.Now. Tests pass a fake clock to expire records without waiting.
	Now func() time.Time

	// CacheBytes bounds the cache of finished records that serves replays
	// without reading the disk. Zero means 64 MiB; negative turns it off.
	// Records enter it when they are replayed, not when first stored.
	CacheBytes int

	// ReadOnly opens the store for inspection without changing a byte of
	// it: calls that would write return ErrReadOnly, no epoch starts and no
	// collector runs. A store that was not closed cleanly (its process was
	// killed) is read from a private copy, made in the system's temporary
	// directory and removed by Close. A store in use by a running process
	// cannot be opened this way (ErrLocked); inspect it through that
	// process's admin handler instead (Store.AdminHandler).
	ReadOnly bool

	// MinFreeDisk is the free space, in bytes, that the store keeps on its
	// file system: below it new keys get ErrDiskFull (completions go on
	// down to half of it). Badger cannot report a full disk as an error
	// (its memory-mapped writes kill the process), so the store stops
	// short of one. Zero means 64 MiB; negative turns the guard off.
	MinFreeDisk int64

	// GCInterval is how often the background collector deletes expired
	// records and reclaims their disk space (see Store.GC). Zero means 5
	// minutes; negative turns the collector off.
	GCInterval time.Duration
}

// defaultCacheBytes is the record cache size when Options.CacheBytes is 0.
const defaultCacheBytes = 64 << 20

// Store is an open idempotency store. It is safe for concurrent use. Work
// is done through the [Scope] values it hands out.
type Store struct {
	be       backend
	log      *slog.Logger
	now      func() time.Time
	epoch    uint64
	readOnly bool
	disk     *diskGuard // nil: no guard
	shards   shards
	stats    counters

	// closing is held shared by every backend call and exclusively by
	// Close, so that Close waits for running I/O and nothing starts after.
	closing sync.RWMutex
	closed  bool        // guarded by closing
	shut    atomic.Bool // closed, for the paths that do no I/O

	mu     sync.Mutex        // guards scopes
	scopes map[string]*Scope // by name
	usage  usages

	gcTurn        chan struct{}      // held by the running collection; capacity 1
	stopCollector context.CancelFunc // ends the background collector
	collectorDone chan struct{}      // closed when it has ended
}

// Open opens the store in opts.Dir, creating it if needed, and starts a new
// epoch: every in-progress record left by an earlier Open is an orphan from
// now on.
func Open(opts Options) (*Store, error) {
	switch {
	case opts.InMemory && opts.Dir != "":
		return nil, invalid(ErrInvalidOptions, "Dir must be empty with InMemory")
	case !opts.InMemory && opts.Dir == "":
		return nil, invalid(ErrInvalidOptions, "Dir is required (or set InMemory)")
	case opts.InMemory && opts.ReadOnly:
		return nil, invalid(ErrInvalidOptions, "an in-memory store cannot be read-only")
	case opts.Shards == 0:
		opts.Shards = defaultShards
	case !validShardCount(opts.Shards):
		return nil, invalid(ErrInvalidOptions, "Shards is %d, want a power of two up to 65536", opts.Shards)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.CacheBytes == 0:
		opts.CacheBytes = defaultCacheBytes
	case opts.CacheBytes < 0:
		opts.CacheBytes = 0
	}
	be, err := openBadger(opts)
	if err != nil {
		return nil, err
	}
	var epoch uint64
	if opts.ReadOnly {
		epoch, err = be.currentEpoch()
	} else {
		epoch, err = be.nextEpoch()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("idem: epoch: %w", err), be.close())
	}
	s := &Store{
		be:            be,
		log:           opts.Logger,
		now:           opts.Now,
		epoch:         epoch,
		readOnly:      opts.ReadOnly,
		disk:          newDiskGuard(opts),
		shards:        newShards(opts.Shards, rand.Uint64(), opts.CacheBytes),
		scopes:        make(map[string]*Scope),
		gcTurn:        make(chan struct{}, 1),
		collectorDone: make(chan struct{}),
	}
	if err := s.census(); err != nil {
		return nil, errors.Join(fmt.Errorf("idem: count records: %w", err), be.close())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopCollector = cancel
	interval := opts.GCInterval
	if interval == 0 {
		interval = DefaultGCInterval
	}
	if opts.ReadOnly || interval < 0 {
		close(s.collectorDone) // no collector
	} else {
		go s.collect(ctx, interval)
	}
	opts.Logger.Debug("idem: store opened", "dir", opts.Dir, "epoch", epoch)
	return s, nil
}

// Close waits for running storage operations and closes the store. Calls
// that are still running a function keep running, but can no longer record
// their outcome: they return [ErrClosed]. Close is safe to call more than
// once and concurrently; later calls return ErrClosed.
func (s *Store) Close() error {
	s.stopCollector() // before taking the lock: a collection in progress needs it
	<-s.collectorDone
	s.closing.Lock()
	defer s.closing.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.shut.Store(true)
	if err := s.be.close(); err != nil {
		return fmt.Errorf("idem: close: %w", err)
	}
	return nil
}

// Epoch returns the number of this Open of the store, counting from 1.
// Records are stamped with the epoch that wrote them.
func (s *Store) Epoch() uint64 { return s.epoch }

// io runs fn against the backend unless the store is closed.
func (s *Store) io(fn func(backend) error) error {
	s.closing.RLock()
	defer s.closing.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return fn(s.be)
}

// Scope returns the scope called name, opening it with o on first use. A
// scope has its own key space and retention; opening one again returns the
// same *Scope, and opening it with different options is an error. Names are
// 1 to 64 bytes of [a-z0-9._-].
func (s *Store) Scope(name string, o ScopeOptions) (*Scope, error) {
	if !validScopeName(name) {
		return nil, invalid(ErrInvalidScope, "name %q: want 1 to %d bytes of [a-z0-9._-]", name, MaxScopeLen)
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("%w (scope %q)", err, name)
	}
	s.closing.RLock()
	defer s.closing.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc, ok := s.scopes[name]; ok {
		if sc.opts != o {
			return nil, invalid(ErrInvalidScope, "scope %q is already open with other options", name)
		}
		return sc, nil
	}
	sc := &Scope{store: s, usage: s.usage.of(name), name: name, opts: o, prefix: keyPrefix(name, "")}
	s.scopes[name] = sc
	return sc, nil
}

// ScopeStats is the usage of one scope: its stored records (keys) and the
// bytes they take, counting claims in progress as keys. The counts follow
// every change this process makes and are recounted by every collection;
// in between they also include records that expired but were not yet
// collected.
type ScopeStats struct {
	Keys  int64
	Bytes int64
}

// Stats is a snapshot of a store's counters since Open.
type Stats struct {
	Claims     uint64 // keys claimed by a caller that then ran (or was to run) the work
	Completed  uint64 // results stored
	Failed     uint64 // permanent failures stored
	Released   uint64 // claims given back without an outcome
	Replays    uint64 // outcomes served from a stored record
	Coalesced  uint64 // duplicates that waited for a running call
	Mismatches uint64 // calls refused with ErrFingerprintMismatch
	Orphans    uint64 // lookups that found an orphaned in-progress record
	InFlight   int64  // claims held right now

	Collections    uint64 // collections run (Store.GC and the background collector)
	Reclaimed      uint64 // expired records they deleted
	ReclaimedBytes uint64 // and the bytes of those records

	Scopes    map[string]ScopeStats // usage by scope name, for every scope stored
	DiskBytes int64                 // bytes the store takes on disk
}

// counters are the atomic cells behind Stats.
type counters struct {
	claims, completed, failed, released, replays, coalesced, mismatches, orphans atomic.Uint64
	collections, reclaimed, reclaimedBytes                                       atomic.Uint64
	inFlight                                                                     atomic.Int64
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Claims:     c.claims.Load(),
		Completed:  c.completed.Load(),
		Failed:     c.failed.Load(),
		Released:   c.released.Load(),
		Replays:    c.replays.Load(),
		Coalesced:  c.coalesced.Load(),
		Mismatches: c.mismatches.Load(),
		Orphans:    c.orphans.Load(),
		InFlight:   c.inFlight.Load(),

		Collections:    c.collections.Load(),
		Reclaimed:      c.reclaimed.Load(),
		ReclaimedBytes: c.reclaimedBytes.Load(),

		Scopes:    s.usage.snapshot(),
		DiskBytes: s.diskSize(),
	}
}

// load reads the record stored under the persisted key k. rec is nil when
// there is none or it has expired; size is the bytes stored under k all
// the same (0 if nothing is).
func (s *Store) load(k []byte) (rec *record, size int64, err error) {
	buf, found, err := s.get(k)
	if err != nil || !found {
		return nil, 0, err
	}
	rec = new(record)
	if err := decodeRecord(buf, rec); err != nil {
		return nil, 0, err
	}
	size = recordSize(k, len(buf))
	if rec.expired(s.now()) {
		return nil, size, nil
	}
	return rec, size, nil
}

// get reads the bytes stored under the persisted key k.
func (s *Store) get(k []byte) (buf []byte, found bool, err error) {
	err = s.io(func(be backend) (err error) {
		buf, found, err = be.get(nil, k)
		return err
	})
	return buf, found, err
}
