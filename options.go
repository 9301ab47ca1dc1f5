package idem

import (
	"log/slog"
	"time"

	"github.com/idemkit/idem/idembadger"
)

// Every default of the store's options, and the code that fills them in,
// is in this file: Options.withDefaults and ScopeOptions.withDefaults.

// Options configures [Open]. The zero value is not usable on its own: set
// Dir, InMemory for a store that lives and dies with the process, or
// Backend.
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

	// Backend is the storage engine. Nil means Badger in Dir (or in
	// memory); Dir, InMemory and SyncWrites configure only that default
	// and must be left empty with another backend, such as the idemredis
	// one that several processes share. Close closes the backend.
	Backend Backend

	// Lease is how long a claim holds its key in a backend shared by
	// several processes: while the work runs the store renews it every
	// LeaseRenewal, and once an owner that died stops renewing, its claim
	// lapses and becomes an orphan (see [OrphanPolicy]). Zero means
	// [DefaultLease], at most MaxTTL. The default backend uses no lease
	// (see [Exclusive]): a claim is held as long as its work runs, and the
	// directory lock proves an earlier owner dead.
	Lease time.Duration

	// LeaseRenewal is how often a running claim's lease is renewed. Zero
	// means a third of Lease; it must be shorter than Lease.
	LeaseRenewal time.Duration

	// CacheMaxAge bounds, with a backend shared by several processes, how
	// long a record is replayed from this process's cache before the
	// backend is asked again: a record deleted through another process
	// (Store.Delete there) can still be replayed here for that long.
	// Records are otherwise immutable until they expire, and expiry is
	// checked on every replay. Zero means 10 seconds. The default backend
	// changes only through this process, so its cache needs no bound.
	CacheMaxAge time.Duration

	// Logger receives the store's and Badger's logs. Nil discards them.
	Logger *slog.Logger
	// Observer, if set, is told of every call, execution, wait, orphan
	// and collection (see Event), for metrics and traces.
	Observer Observer
	// ObserveKeys puts the key and tenant of each call in its Event. Off
	// by default: keys make unbounded labels, and may be private.
	ObserveKeys bool

	// Shards is the number of shards that in-flight calls are spread over,
	// a power of two. Zero means 64.
	Shards int

	// Now is the clock that records are dated and expired by. Nil means
	// the backend's own clock when it has one (see [Clock]: with
	// idemredis, the Redis server's), so that instances whose clocks
	// disagree still agree on every record's life, and time.Now otherwise.
	// Tests pass a fake clock to expire records without waiting; with a
	// shared backend each instance then goes by the clock it was given.
	Now func() time.Time

	// CacheBytes bounds the cache of finished records that serves replays
	// without reading the disk. Zero means 64 MiB; negative turns it off.
	// Records enter it when they are replayed; with a shared backend,
	// also when this process stores them.
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
	// file system, beyond half its own size (room for Badger's compactions
	// to rewrite it): below that, new keys get ErrDiskFull (completions go
	// on down to half of it). Badger cannot report a full disk as an error
	// (its memory-mapped writes kill the process), so the store stops
	// short of one. Zero means 64 MiB; negative turns this check off (the
	// store still refuses writes while its directory cannot take a new
	// file: see ErrStorageFault).
	MinFreeDisk int64

	// GCInterval is how often the background collector deletes expired
	// records and reclaims their disk space (see Store.GC). Zero means 5
	// minutes; negative turns the collector off. A shared backend expires
	// records itself: there the background collection only recounts the
	// scopes with caps, by reading their records, which are also counted
	// when the scope is opened. Other scopes' usage follows this process's
	// writes, plus what the last Store.GC counted.
	GCInterval time.Duration
}

// Lease defaults: a claim is held for DefaultLease and renewed every third
// of it while its work runs.
const (
	DefaultLease = 15 * time.Second
)

// DefaultGCInterval is how often the collector runs when
// Options.GCInterval is zero.
const DefaultGCInterval = 5 * time.Minute

// DefaultMinFreeDisk is Options.MinFreeDisk when it is zero.
const DefaultMinFreeDisk = idembadger.DefaultMinFreeDisk

// defaultShards is the shard count when Options.Shards is zero: enough that
// unrelated keys rarely share a mutex on a many-core machine.
const defaultShards = 64

// defaultCacheBytes is the record cache size when Options.CacheBytes is 0.
const defaultCacheBytes = 64 << 20

// defaultCacheMaxAge is Options.CacheMaxAge when it is zero.
const defaultCacheMaxAge = 10 * time.Second

// withDefaults checks o and fills in its zero fields. Options.Now is left
// to Open, which knows the process's clock.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Shards == 0:
		o.Shards = defaultShards
	case !validShardCount(o.Shards):
		return o, invalid(ErrInvalidOptions, "Shards is %d, want a power of two up to 65536", o.Shards)
	}
	if o.Lease == 0 {
		o.Lease = DefaultLease
	}
	if o.LeaseRenewal == 0 {
		o.LeaseRenewal = o.Lease / 3
	}
	switch {
	case o.Lease < 0 || o.LeaseRenewal < 0:
		return o, invalid(ErrInvalidOptions, "negative Lease or LeaseRenewal")
	case o.Lease > MaxTTL:
		return o, invalid(ErrInvalidOptions, "Lease %v is over MaxTTL (%v)", o.Lease, MaxTTL)
	case o.LeaseRenewal >= o.Lease:
		return o, invalid(ErrInvalidOptions, "LeaseRenewal %v must be shorter than Lease %v", o.LeaseRenewal, o.Lease)
	case o.CacheMaxAge < 0:
		return o, invalid(ErrInvalidOptions, "negative CacheMaxAge")
	case o.Backend != nil && (o.Dir != "" || o.InMemory || o.SyncWrites):
		return o, invalid(ErrInvalidOptions, "Dir, InMemory and SyncWrites configure the default backend: leave them empty with Backend")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.CacheBytes == 0:
		o.CacheBytes = defaultCacheBytes
	case o.CacheBytes < 0:
		o.CacheBytes = 0
	}
	if o.CacheMaxAge == 0 {
		o.CacheMaxAge = defaultCacheMaxAge
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	return o, nil
}

// Defaults for the ScopeOptions fields left zero.
const (
	// DefaultTTL is how long a completed result is kept.
	DefaultTTL = 24 * time.Hour
	// DefaultMaxValueSize is the largest result stored, in bytes.
	DefaultMaxValueSize = 1 << 20
	// MaxTTL is the longest retention a scope accepts (TTL, FailureTTL,
	// OrphanTTL), and the longest Options.Lease: 100 years, far enough to
	// mean "forever" and near enough that no deadline overflows a clock.
	MaxTTL = 100 * 365 * 24 * time.Hour
	// maxValueSizeLimit bounds ScopeOptions.MaxValueSize so that every
	// value fits comfortably in one Badger value-log file.
	maxValueSizeLimit = idembadger.ValueLogFileSize / 2
)

// ScopeOptions configures a scope. The zero value is a scope that keeps
// results for 24 hours and reruns orphans.
type ScopeOptions struct {
	// TTL is how long a completed result is kept and replayed. Zero means
	// 24 hours; at most MaxTTL (100 years, for "forever").
	TTL time.Duration
	// FailureTTL is how long a permanent failure (see Permanent) is kept.
	// Zero means TTL.
	FailureTTL time.Duration
	// OrphanTTL is how long an in-progress record persisted under
	// OrphanReport is kept, counted from its claim: after a crash, the key
	// answers ErrOutcomeUnknown for that long. Zero means TTL.
	OrphanTTL time.Duration
	// Orphans is the orphan policy. The zero value is OrphanRerun.
	Orphans OrphanPolicy
	// MaxValueSize is the largest result stored, in bytes. A larger one is
	// returned to its caller but stored as its size only, so retries get
	// ErrValueTooLarge. Zero means 1 MiB; at most 8 MiB. A backend that holds
	// less (Badger in memory: a little under 1 MiB) lowers the default to
	// its limit and refuses a larger setting.
	MaxValueSize int
	// MaxKeys caps the keys the scope holds, all tenants together,
	// counting claims in progress. A new key beyond it gets ErrScopeFull.
	// Zero means no cap.
	MaxKeys int64
	// MaxBytes caps the bytes the scope's records take (keys and encoded
	// records): once it holds that many, a new key gets ErrScopeFull. Zero
	// means no cap.
	MaxBytes int64
}

func (o ScopeOptions) withDefaults() (ScopeOptions, error) {
	switch {
	case o.TTL < 0 || o.FailureTTL < 0 || o.OrphanTTL < 0:
		return o, invalid(ErrInvalidScope, "negative retention")
	case o.TTL > MaxTTL || o.FailureTTL > MaxTTL || o.OrphanTTL > MaxTTL:
		return o, invalid(ErrInvalidScope, "retention over MaxTTL (%v): TTL %v, FailureTTL %v, OrphanTTL %v", MaxTTL, o.TTL, o.FailureTTL, o.OrphanTTL)
	case o.Orphans > OrphanReport:
		return o, invalid(ErrInvalidScope, "unknown orphan policy %d", o.Orphans)
	case o.MaxKeys < 0 || o.MaxBytes < 0:
		return o, invalid(ErrInvalidScope, "negative cap")
	case o.MaxValueSize < 0 || o.MaxValueSize > maxValueSizeLimit:
		return o, invalid(ErrInvalidScope, "MaxValueSize %d out of range 0 to %d", o.MaxValueSize, maxValueSizeLimit)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.FailureTTL == 0 {
		o.FailureTTL = o.TTL
	}
	if o.OrphanTTL == 0 {
		o.OrphanTTL = o.TTL
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	return o, nil
}
