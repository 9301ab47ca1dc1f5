package idem

import (
	"math"
	"time"
)

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
	maxValueSizeLimit = 32 << 20
)

// deadline is the exact expiry, in the store clock's Unix nanoseconds, of a
// record written at now with retention ttl (at most MaxTTL). A clock set
// so far ahead that the sum would overflow gets the latest deadline there
// is, never one that wraps into the past.
func deadline(now time.Time, ttl time.Duration) int64 {
	ns := now.UnixNano()
	if int64(ttl) > math.MaxInt64-ns {
		return math.MaxInt64
	}
	return ns + int64(ttl)
}

// timeOf turns a record's Unix nanoseconds into a time.Time.
func timeOf(ns int64) time.Time { return time.Unix(0, ns) }
