package idem

import (
	"sync"
	"sync/atomic"
)

// usage counts one scope's stored records, for its caps and for Stats.
// The counts follow every write and deletion of this process and are
// recounted by every collection ([Store.GC]); between collections they
// also include records that expired but were not yet deleted, so caps err
// on the side of refusing.
type usage struct {
	keys  atomic.Int64
	bytes atomic.Int64
}

// remove takes a deleted record of size bytes off the counts.
func (u *usage) remove(size int64) {
	u.keys.Add(-1)
	u.bytes.Add(-size)
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
