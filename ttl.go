package idem

import "time"

// Defaults for the ScopeOptions fields left zero.
const (
	// DefaultTTL is how long a completed result is kept.
	DefaultTTL = 24 * time.Hour
	// DefaultMaxValueSize is the largest result stored, in bytes.
	DefaultMaxValueSize = 1 << 20
	// maxValueSizeLimit bounds ScopeOptions.MaxValueSize so that every
	// value fits comfortably in one Badger value-log file.
	maxValueSizeLimit = 32 << 20
)

// deadline is the exact expiry, in the store clock's Unix nanoseconds, of a
// record written at now with retention ttl.
func deadline(now time.Time, ttl time.Duration) int64 { return now.Add(ttl).UnixNano() }

// engineExpiry is the Unix second after which Badger may hide and collect
// an entry kept for ttl. Badger counts TTLs in whole seconds of the wall
// clock, so the time is rounded up by a second: the engine never drops a
// record before the store's own expiry check would. The store passes the
// time left by its own clock (see Store.keep).
func engineExpiry(ttl time.Duration) uint64 {
	return uint64(time.Now().Add(max(ttl, 0)).Unix()) + 1
}

// timeOf turns a record's Unix nanoseconds into a time.Time.
func timeOf(ns int64) time.Time { return time.Unix(0, ns) }
