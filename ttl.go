package idem

import (
	"math"
	"time"
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
