package backend

import "context"

// The store looks for these optional capabilities by type assertion on
// the backend it is given, as database/sql looks for driver.Pinger; a
// backend implements those its storage needs. Exclusive, Clock and
// Watcher (in backend.go) are capabilities too.

// Sweeper is implemented by a backend that keeps entries until they are
// deleted (an Exclusive one): the store's collector then walks every
// entry, decides by its own clock which have expired, and deletes them.
// A backend without it expires entries by itself.
type Sweeper interface {
	// Sweep calls fn for up to limit entries whose keys start with
	// prefix, from start on, in key order, with their values (as in
	// Entry.Value), and returns the key to go on from, or nil at the end.
	// key and value are valid only during the call to fn.
	Sweep(ctx context.Context, prefix, start []byte, limit int, fn func(key, value []byte) error) (next []byte, err error)

	// DeleteAll durably deletes keys, in one write where it can. The
	// store calls it only for keys that it owns in its shards at the time
	// (no claim of its process holds them, and none can start until
	// DeleteAll returns), and that no other process uses (the backend is
	// Exclusive): it need not check owners.
	DeleteAll(ctx context.Context, keys [][]byte) error
}

// Expirer is implemented by a backend that judges expiry by its own clock
// (Get and Scan never show an expired entry) but does not delete expired
// entries by itself, such as a SQL table: the store's collector deletes
// them through it, a batch at a time.
type Expirer interface {
	// DeleteExpired deletes at most limit expired entries, without waiting
	// for entries that claims hold locked, and returns how many it deleted
	// and the bytes of their keys and values.
	DeleteExpired(ctx context.Context, limit int) (deleted int, bytes int64, err error)
}

// Reclaimer is implemented by a backend whose deletions take effect on
// disk only later: after a collection has deleted entries, the store calls
// Reclaim to give their space back.
type Reclaimer interface {
	// Reclaim gives the space of deleted entries back and returns how many
	// units of storage it rewrote to do so (Badger: value-log files).
	Reclaim(ctx context.Context) (rewritten int, err error)
}

// DiskUser is implemented by a backend that keeps its storage on the
// local disk, for the store's Stats and GC reports.
type DiskUser interface {
	// DiskBytes is the space the backend's files take on disk.
	DiskBytes() int64
}

// WriteGuard is implemented by a backend that must refuse writes before
// its storage fails them badly (Badger, whose memory-mapped writes kill
// the process on a full disk). The store asks it before every claim of a
// new key and every completion.
type WriteGuard interface {
	// AllowWrite returns nil, or why nothing may be written now: an error
	// wrapping ErrDiskFull or ErrStorageFault. newKey is true for the
	// claim of a new key, false for a write that ends a claim (which may
	// go on a little longer, so that work already done is recorded).
	AllowWrite(newKey bool) error
}

// ValueLimit is implemented by a backend that cannot store a value longer
// than some size (Badger in memory: 1 MiB). The store keeps each scope's
// MaxValueSize under it, so that a larger result is stored as its size
// only, as any result over MaxValueSize is, instead of failing.
type ValueLimit interface {
	// MaxValue is the longest value, in bytes, that Claim and Complete
	// accept.
	MaxValue() int
}
