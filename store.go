package idem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/idembadger"
)

// Store is an open idempotency store. It is safe for concurrent use. Work
// is done through the [Scope] values it hands out.
type Store struct {
	be Backend
	// The optional capabilities be has (see package backend); nil if it
	// has not.
	sweeper     backend.Sweeper
	reclaimer   backend.Reclaimer
	diskUser    backend.DiskUser
	guard       backend.WriteGuard
	expirer     backend.Expirer
	exclusive   bool          // be is Exclusive: claims need no lease
	lease       time.Duration // claims' leases
	renewal     time.Duration // how often they are renewed; 0: never (local)
	cacheAge    int64         // nanoseconds a cached record is trusted; 0: until it expires
	log         *slog.Logger
	obs         Observer // Options.Observer; nil: none
	observeKeys bool
	now         func() time.Time // Options.Now, or the process's clock
	clock       Clock            // the backend's clock, when it has one and Options.Now is nil
	recent      *recentClock     // cache hits' clock when the store's is the process's; nil: it is not
	epoch       uint64
	readOnly    bool
	shards      shards
	stats       counters

	// closing is held shared by every backend call and exclusively by
	// Close, so that Close waits for running I/O and nothing starts after.
	closing sync.RWMutex
	closed  bool          // guarded by closing
	shut    atomic.Bool   // closed, for the paths that do no I/O
	quit    chan struct{} // closed when Close begins: long calls stop waiting
	quitter sync.Once     // closes quit

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
func Open(opts Options) (*Store, error) { return open(opts, time.Now) }

// open is Open with the process's clock, wall (tests pass a skewed one).
func open(opts Options, wall func() time.Time) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	clock, _ := opts.Backend.(Clock)
	processClock := opts.Now == nil
	if processClock {
		opts.Now = wall
	} else {
		clock = nil // the caller's clock rules
	}
	be := opts.Backend
	if be == nil {
		b, err := openDefault(opts)
		if err != nil {
			return nil, err
		}
		be = b
	}
	s := &Store{
		be:            be,
		lease:         opts.Lease,
		renewal:       opts.LeaseRenewal,
		cacheAge:      opts.CacheMaxAge.Nanoseconds(),
		log:           opts.Logger,
		now:           opts.Now,
		clock:         clock,
		readOnly:      opts.ReadOnly,
		shards:        newShards(opts.Shards, opts.CacheBytes),
		scopes:        make(map[string]*Scope),
		gcTurn:        make(chan struct{}, 1),
		quit:          make(chan struct{}),
		collectorDone: make(chan struct{}),
	}
	if processClock && clock == nil {
		s.recent = newRecentClock(wall)
	}
	if ex, ok := be.(Exclusive); ok {
		s.exclusive, s.epoch = true, ex.Epoch()
		s.renewal, s.cacheAge = 0, 0
	}
	s.obs, s.observeKeys = opts.Observer, opts.ObserveKeys
	s.sweeper, _ = be.(backend.Sweeper)
	s.reclaimer, _ = be.(backend.Reclaimer)
	s.diskUser, _ = be.(backend.DiskUser)
	s.guard, _ = be.(backend.WriteGuard)
	s.expirer, _ = be.(backend.Expirer)
	// A shared store is not read whole unasked: every instance reading
	// every record at each start would load it. Its capped scopes are
	// counted when opened (Store.Scope).
	if s.exclusive {
		if err := s.census(context.Background(), nil, nil); err != nil {
			return nil, errors.Join(fmt.Errorf("idem: count records: %w", err), be.Close())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopCollector = cancel
	interval := opts.GCInterval
	if opts.ReadOnly || interval <= 0 {
		close(s.collectorDone) // no collector
	} else {
		go s.collect(ctx, interval)
	}
	opts.Logger.Debug("idem: store opened", "dir", opts.Dir, "epoch", s.epoch)
	if so, ok := opts.Observer.(StoreObserver); ok {
		so.ObserveStore(s)
	}
	return s, nil
}

// Close waits for running storage operations and closes the store. Calls
// that are still running a function keep running, but can no longer record
// their outcome: they return [ErrClosed]. Close is safe to call more than
// once and concurrently; later calls return ErrClosed.
func (s *Store) Close() error {
	s.quitter.Do(func() { close(s.quit) }) // before taking the lock, as for the collector
	s.stopCollector()                      // before taking the lock: a collection in progress needs it
	<-s.collectorDone
	s.closing.Lock()
	defer s.closing.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.shut.Store(true)
	if s.recent != nil {
		s.recent.stop()
	}
	if err := s.be.Close(); err != nil {
		return fmt.Errorf("idem: close: %w", err)
	}
	return nil
}

// Epoch returns the number of this open of the backend's storage,
// counting from 1, for a backend used by one process at a time
// ([Exclusive]: the default, Badger); 0 with a shared one, such as
// idemredis. Records are stamped with the epoch that wrote them.
func (s *Store) Epoch() uint64 { return s.epoch }

// openDefault opens the default backend, Badger, from opts.
func openDefault(opts Options) (*idembadger.Backend, error) {
	return idembadger.Open(idembadger.Options{
		Dir: opts.Dir, InMemory: opts.InMemory, SyncWrites: opts.SyncWrites,
		ReadOnly: opts.ReadOnly, MinFreeDisk: opts.MinFreeDisk, Logger: opts.Logger,
	})
}

// OpenBadger opens the default backend as [Open] does without
// Options.Backend, from opts' Dir, InMemory, SyncWrites, ReadOnly,
// MinFreeDisk and Logger: for tests of the [Backend] contract, or to pass
// a Badger backend in Options.Backend. Like the directory, it serves one
// Store at a time. Package idembadger has all of its options.
func OpenBadger(opts Options) (Backend, error) { return openDefault(opts) }

// allowWrite asks the backend's WriteGuard, if it has one, whether
// anything may be written: a new key (newKey) or the end of a claim.
func (s *Store) allowWrite(newKey bool) error {
	if s.guard == nil {
		return nil
	}
	return s.guard.AllowWrite(newKey)
}

// io runs fn against the backend unless the store is closed.
func (s *Store) io(fn func(Backend) error) error {
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
	explicit := o.MaxValueSize != 0
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("%w (scope %q)", err, name)
	}
	if vl, ok := s.be.(backend.ValueLimit); ok {
		// A result the backend cannot hold is stored as its size only,
		// like one over MaxValueSize, rather than failing its completion.
		limit := max(vl.MaxValue()-maxRecordOverhead, 0)
		switch {
		case o.MaxValueSize <= limit:
		case explicit:
			return nil, invalid(ErrInvalidScope, "MaxValueSize %d over this backend's limit of %d (scope %q)", o.MaxValueSize, limit, name)
		default:
			o.MaxValueSize = limit
		}
	}
	if sc, ok, err := s.openScope(name, o, false); ok || err != nil {
		return sc, err
	}
	if !s.exclusive && (o.MaxKeys > 0 || o.MaxBytes > 0) {
		// Caps on a shared store need what the other processes stored.
		if err := s.census(context.Background(), nil, []string{name}); err != nil {
			return nil, fmt.Errorf("idem: count scope %q: %w", name, err)
		}
	}
	sc, _, err := s.openScope(name, o, true)
	return sc, err
}

// openScope returns the open scope called name (ok), or with create opens
// it with o.
func (s *Store) openScope(name string, o ScopeOptions, create bool) (sc *Scope, ok bool, err error) {
	s.closing.RLock()
	defer s.closing.RUnlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc, ok := s.scopes[name]; ok {
		if sc.opts != o {
			return nil, true, invalid(ErrInvalidScope, "scope %q is already open with other options", name)
		}
		return sc, true, nil
	}
	if !create {
		return nil, false, nil
	}
	sc = &Scope{store: s, usage: s.usage.of(name), name: name, opts: o, prefix: keyPrefix(name, "")}
	s.scopes[name] = sc
	return sc, true, nil
}

// ScopeStats is the usage of one scope: its stored records (keys) and the
// bytes they take, counting claims in progress as keys. The counts follow
// every change this process makes and are recounted by every collection;
// in between they also include records that expired but were not yet
// collected.
type ScopeStats struct {
	Keys  int64 `json:"keys"`
	Bytes int64 `json:"bytes"`
}

// Stats is a snapshot of a store's counters since Open.
type Stats struct {
	Claims     uint64 `json:"claims"`     // keys claimed by a caller that then ran (or was to run) the work
	Completed  uint64 `json:"completed"`  // results stored
	Failed     uint64 `json:"failed"`     // permanent failures stored
	Released   uint64 `json:"released"`   // claims given back without an outcome
	Abandoned  uint64 `json:"abandoned"`  // claims whose work ran but whose outcome could not be stored: orphans now
	Replays    uint64 `json:"replays"`    // outcomes served from a stored record
	Coalesced  uint64 `json:"coalesced"`  // duplicates that waited for a running call
	Mismatches uint64 `json:"mismatches"` // calls refused with ErrFingerprintMismatch
	Orphans    uint64 `json:"orphans"`    // lookups that found an orphaned in-progress record
	InFlight   int64  `json:"in_flight"`  // claims held right now

	Collections    uint64 `json:"collections"`     // collections run (Store.GC and the background collector)
	Reclaimed      uint64 `json:"reclaimed"`       // expired records they deleted
	ReclaimedBytes uint64 `json:"reclaimed_bytes"` // and the bytes of those records

	Scopes    map[string]ScopeStats `json:"scopes"`     // usage by scope name, for every scope stored
	DiskBytes int64                 `json:"disk_bytes"` // bytes the store takes on disk (engines on the local disk, such as Badger; 0 for others)
}

// counters are the atomic cells behind Stats.
type counters struct {
	claims, completed, failed, released, abandoned, coalesced, mismatches, orphans atomic.Uint64
	collections, reclaimed, reclaimedBytes                                         atomic.Uint64
	inFlight                                                                       atomic.Int64
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Claims:     c.claims.Load(),
		Completed:  c.completed.Load(),
		Failed:     c.failed.Load(),
		Released:   c.released.Load(),
		Abandoned:  c.abandoned.Load(),
		Replays:    s.shards.replays(),
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

// cacheUntil is until when a record read from the backend at now (Unix
// nanoseconds of the store's clock) may be replayed from the cache: its
// expiry, and with a shared backend no later than CacheMaxAge after now.
func (s *Store) cacheUntil(rec *record, now int64) int64 {
	if s.cacheAge == 0 {
		return rec.expires
	}
	return min(rec.expires, now+s.cacheAge)
}

// time returns the store's current time: Options.Now's if it is set, else
// the backend's own clock if it has one (see [Clock]), else the process's.
func (s *Store) time(ctx context.Context) (time.Time, error) {
	if s.clock != nil {
		return s.clock.Now(ctx)
	}
	return s.now(), nil
}

// hitHorizon is the time, in Unix nanoseconds, that a record in the cache
// must live past to be replayed from there without reading a clock: the
// recent clock's time plus recentSlack (see recentClock). When the store's
// clock is not the process's, horizon is that clock's time, which is also
// returned as now; otherwise now is zero (not read yet).
func (s *Store) hitHorizon(ctx context.Context) (horizon int64, now time.Time, err error) {
	if s.recent != nil {
		return s.recent.Now() + int64(recentSlack), time.Time{}, nil
	}
	now, err = s.time(ctx)
	return now.UnixNano(), now, err
}

// load reads the record stored under the persisted key k. rec is nil when
// there is none or it has expired by the store's clock; e is the entry
// stored all the same (zero if none).
func (s *Store) load(ctx context.Context, k []byte) (rec *record, e Entry, err error) {
	var found bool
	err = s.io(func(be Backend) (err error) {
		e, found, err = be.Get(ctx, k)
		return err
	})
	if err != nil || !found {
		return nil, e, err
	}
	rec = new(record)
	if err := decodeRecord(e.Value, rec); err != nil {
		return nil, e, err
	}
	now, err := s.time(ctx)
	if err != nil {
		return nil, e, err
	}
	if rec.expired(now) {
		return nil, e, nil
	}
	return rec, e, nil
}
