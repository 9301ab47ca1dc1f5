package idem

import (
	"sync"
	"sync/atomic"
)

// usage counts one scope's stored records, for its caps and for Stats.
// The counts follow every write and deletion of this process and are
// recounted by every collection ([Store.GC]); between collections they
// also include records that expired but were not yet deleted, so caps err
// on the side of refusing. Every change goes through its methods, one per
// way a key enters, changes or leaves.
type usage struct {
	keys  atomic.Int64
	bytes atomic.Int64
}

// reserve counts one more key, about to be claimed, unless that would
// pass the caps (zero: none): concurrent claims see it at once. A
// reservation ends with entered or unreserve.
func (u *usage) reserve(maxKeys, maxBytes int64) bool {
	if maxBytes > 0 && u.bytes.Load() >= maxBytes {
		return false
	}
	if n := u.keys.Add(1); maxKeys > 0 && n > maxKeys {
		u.keys.Add(-1)
		return false
	}
	return true
}

// unreserve gives back a reservation whose key did not enter: nothing was
// claimed, or the key turned out to be stored already.
func (u *usage) unreserve() { u.keys.Add(-1) }

// entered records that a reserved key was claimed, with a record of size
// bytes; if the claim replaced a stored record (replaced), that record, of
// prev bytes, left.
func (u *usage) entered(size int64, replaced bool, prev int64) {
	if replaced {
		u.keys.Add(-1)
		size -= prev
	}
	u.bytes.Add(size)
}

// resized records that a stored key's record went from one size to
// another.
func (u *usage) resized(from, to int64) { u.bytes.Add(to - from) }

// left records that a stored key of size bytes was removed.
func (u *usage) left(size int64) {
	u.keys.Add(-1)
	u.bytes.Add(-size)
}

// recounted replaces the counts a recount started from (before) with the
// ones it made (counted), keeping what changed meanwhile.
func (u *usage) recounted(before, counted ScopeStats) {
	u.keys.Add(counted.Keys - before.Keys)
	u.bytes.Add(counted.Bytes - before.Bytes)
}

// usages maps scope names to their usage, including scopes found on disk
// that no caller has opened in this process.
type usages struct {
	mu sync.Mutex // guards m
	m  map[string]*usage
}

func (u *usages) of(scope string) *usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = make(map[string]*usage)
	}
	us := u.m[scope]
	if us == nil {
		us = new(usage)
		u.m[scope] = us
	}
	return us
}

// snapshot returns the counts of every scope.
func (u *usages) snapshot() map[string]ScopeStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]ScopeStats, len(u.m))
	for name, us := range u.m {
		out[name] = ScopeStats{Keys: max(0, us.keys.Load()), Bytes: max(0, us.bytes.Load())}
	}
	return out
}

// recordSize is what a stored record counts for in its scope's bytes.
func recordSize(key []byte, encoded int) int64 { return int64(len(key) + encoded) }
