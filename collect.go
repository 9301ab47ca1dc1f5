package idem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// sweepBatch is how many keys a collection looks at per storage
// transaction, and deletes at most per commit.
const sweepBatch = 1024

// GCStats reports what one collection did. As JSON its names are
// snake_case and Duration is in seconds (duration_seconds), like every
// figure the admin handler and the idem command print.
type GCStats struct {
	Scanned          int64         `json:"scanned"`            // records looked at
	Deleted          int64         `json:"deleted"`            // expired records deleted
	DeletedBytes     int64         `json:"deleted_bytes"`      // their keys and records, in bytes
	Live             int64         `json:"live"`               // records left
	ValueLogRewrites int           `json:"value_log_rewrites"` // storage the engine rewrote to give space back (Badger: value-log files; 0 for others)
	DiskBefore       int64         `json:"disk_before"`        // bytes on disk when it started (engines on the local disk, such as Badger; 0 for others)
	DiskAfter        int64         `json:"disk_after"`         // and when it ended
	Duration         time.Duration `json:"-"`                  // how long it took
}

// gcStatsJSON is GCStats as JSON: the duration in seconds.
type gcStatsJSON struct {
	gcStatsFields
	DurationSeconds float64 `json:"duration_seconds"`
}

// gcStatsFields is GCStats without its methods, so that encoding it does
// not recurse.
type gcStatsFields GCStats

// MarshalJSON encodes s with its duration in seconds.
func (s GCStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(gcStatsJSON{gcStatsFields(s), s.Duration.Seconds()})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *GCStats) UnmarshalJSON(b []byte) error {
	var v gcStatsJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = GCStats(v.gcStatsFields)
	s.Duration = time.Duration(v.DurationSeconds * float64(time.Second))
	return nil
}

// GC runs one full collection now: it deletes every expired record (each
// under the same per-key ownership as a claim, so a key claimed again
// meanwhile is never deleted), recounts the scopes' usage, and has the
// engine give the space back. With a shared backend, which expires records
// itself, a collection only recounts the usage of every scope. It paces itself, pausing twice as long as
// it works, so it takes at most about a third of one core from the
// application.
// It stops early, with ctx's error, when ctx ends; what it deleted stays
// deleted. One collection runs at a time; a second caller waits its turn.
func (s *Store) GC(ctx context.Context) (GCStats, error) { return s.gc(ctx, nil) }

// gc runs a collection; with a shared backend it counts the scopes named
// in only, or all if only is nil.
func (s *Store) gc(ctx context.Context, only []string) (GCStats, error) {
	if ctx == nil {
		return GCStats{}, errNilContext
	}
	if s.shut.Load() {
		return GCStats{}, ErrClosed
	}
	if s.readOnly {
		return GCStats{}, ErrReadOnly
	}
	select {
	case s.gcTurn <- struct{}{}:
		defer func() { <-s.gcTurn }()
	case <-ctx.Done():
		return GCStats{}, ctx.Err()
	}
	start := time.Now()
	stats := GCStats{DiskBefore: s.diskSize()}
	var err error
	switch {
	case s.sweeper != nil:
		err = s.sweep(ctx, &stats)
	case s.expirer != nil:
		if err = s.expire(ctx, &stats); err == nil {
			err = s.census(ctx, &stats, only)
		}
	default:
		err = s.census(ctx, &stats, only)
	}
	if err == nil && s.reclaimer != nil {
		err = s.io(func(Backend) (err error) {
			stats.ValueLogRewrites, err = s.reclaimer.Reclaim(ctx)
			return err
		})
	}
	stats.DiskAfter = s.diskSize()
	stats.Duration = time.Since(start)
	s.stats.collections.Add(1)
	s.stats.reclaimed.Add(uint64(stats.Deleted))
	s.stats.reclaimedBytes.Add(uint64(stats.DeletedBytes))
	if s.obs != nil {
		s.obs.Observe(ctx, Event{Kind: EventCollection, Duration: stats.Duration,
			Reclaimed: int64(stats.Deleted), ReclaimedBytes: int64(stats.DeletedBytes)})
	}
	if err != nil {
		return stats, fmt.Errorf("idem: gc: %w", err)
	}
	s.log.Debug("idem: gc", "scanned", stats.Scanned, "deleted", stats.Deleted,
		"disk_before", stats.DiskBefore, "disk_after", stats.DiskAfter, "duration", stats.Duration)
	return stats, nil
}

// expire has an Expirer backend delete its expired entries, a batch at a
// time, pausing twice as long as each batch took.
func (s *Store) expire(ctx context.Context, stats *GCStats) error {
	for {
		began := time.Now()
		var (
			n     int
			bytes int64
		)
		err := s.io(func(Backend) (err error) {
			n, bytes, err = s.expirer.DeleteExpired(ctx, sweepBatch)
			return err
		})
		if err != nil {
			return err
		}
		stats.Deleted += int64(n)
		stats.DeletedBytes += bytes
		if n < sweepBatch {
			return nil
		}
		pause := time.NewTimer(2 * time.Since(began))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return ctx.Err()
		}
	}
}

// expiredKey is a record a sweep found expired, to delete.
type expiredKey struct {
	key  []byte
	size int64
}

// sweep walks every record, deletes the expired ones and recounts usage.
func (s *Store) sweep(ctx context.Context, stats *GCStats) error {
	before := s.usage.snapshot()
	counted := make(map[string]ScopeStats)
	next := []byte{recordPrefix}
	for next != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		began := time.Now()
		now, err := s.time(ctx)
		if err != nil {
			return err
		}
		var expired []expiredKey
		err = s.io(func(Backend) (err error) {
			next, err = s.sweeper.Sweep(ctx, []byte{recordPrefix}, next, sweepBatch, func(key, value []byte) error {
				stats.Scanned++
				size := recordSize(key, len(value))
				var rec record
				if decodeRecord(value, &rec) != nil || !rec.expired(now) {
					tally(counted, key, size)
					return nil // live, or damaged: left for its owner to see
				}
				expired = append(expired, expiredKey{key: append([]byte(nil), key...), size: size})
				return nil
			})
			return err
		})
		if err != nil {
			return err
		}
		if err := s.deleteExpired(expired, stats); err != nil {
			return err
		}
		pause := time.NewTimer(2 * time.Since(began))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
		}
	}
	s.recount(before, counted)
	for _, c := range counted {
		stats.Live += c.Keys
	}
	return nil
}

// deleteExpired deletes, in one commit, those of the keys that are still
// expired once the caller owns them, as a claim would.
func (s *Store) deleteExpired(keys []expiredKey, stats *GCStats) error {
	type held struct {
		expiredKey
		sh   *shard
		c    *call
		dead bool
	}
	var (
		owned []held
		dead  [][]byte
		err   error
	)
	for _, k := range keys {
		sh, hash := s.shards.of(k.key)
		c := sh.own(k.key, hash)
		if c == nil {
			continue // a caller is on it right now
		}
		h := held{expiredKey: k, sh: sh, c: c}
		rec, e, lerr := s.load(context.Background(), k.key)
		switch {
		case lerr != nil && !errors.Is(lerr, ErrCorrupt):
			err = lerr
		case lerr == nil && rec == nil: // still absent or expired
			h.dead, h.size = true, max(k.size, recordSize(k.key, len(e.Value)))
			dead = append(dead, k.key)
		}
		owned = append(owned, h)
		if err != nil {
			break
		}
	}
	if err == nil && len(dead) > 0 {
		err = s.io(func(Backend) error { return s.sweeper.DeleteAll(context.Background(), dead) })
	}
	for _, h := range owned {
		if err == nil && h.dead {
			stats.Deleted++
			stats.DeletedBytes += h.size
		}
		h.sh.finish(h.key, h.c, nil, 0, false)
	}
	return err
}

// recount replaces each scope's usage with what a sweep counted, keeping
// the changes made while it ran (before is the usage when it started).
func (s *Store) recount(before, counted map[string]ScopeStats) {
	names := make(map[string]bool, len(before)+len(counted))
	for name := range before {
		names[name] = true
	}
	for name := range counted {
		names[name] = true
	}
	for name := range names {
		u := s.usage.of(name)
		b, c := before[name], counted[name]
		u.recounted(b, c)
	}
}

// tally counts the record stored under key, size bytes, in its scope.
func tally(counted map[string]ScopeStats, key []byte, size int64) {
	scope, _, _, _ := splitKey(key)
	c := counted[scope]
	c.Keys++
	c.Bytes += size
	counted[scope] = c
}

// census counts the stored records of the scopes named in only (every
// scope if only is nil): at Open, and as the collection of a shared
// backend. stats, if not nil, gets the counts.
func (s *Store) census(ctx context.Context, stats *GCStats, only []string) error {
	prefixes := [][]byte{{recordPrefix}}
	if only != nil {
		prefixes = prefixes[:0]
		for _, name := range only {
			p := keyPrefix(name, "")
			prefixes = append(prefixes, p[:len(p)-1]) // every tenant
		}
	}
	before := s.usage.snapshot()
	counted := make(map[string]ScopeStats)
	for _, name := range only {
		counted[name] = ScopeStats{} // counted, even if empty
	}
	err := s.io(func(be Backend) error {
		for _, prefix := range prefixes {
			err := be.Scan(ctx, prefix, func(key []byte, e Entry) error {
				tally(counted, key, recordSize(key, len(e.Value)))
				if stats != nil {
					stats.Scanned++
					stats.Live++
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if only != nil {
		for name := range before {
			if _, ok := counted[name]; !ok {
				delete(before, name) // not counted: left as it is
			}
		}
	}
	s.recount(before, counted)
	return nil
}

// cappedScopes names the open scopes with a cap.
func (s *Store) cappedScopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{}
	for name, sc := range s.scopes {
		if sc.opts.MaxKeys > 0 || sc.opts.MaxBytes > 0 {
			names = append(names, name)
		}
	}
	return names
}

// collect runs GC every interval until ctx ends.
func (s *Store) collect(ctx context.Context, interval time.Duration) {
	defer close(s.collectorDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			var only []string
			if !s.exclusive {
				// A shared store is read whole only when asked (Store.GC):
				// in the background, just the scopes whose caps need it,
				// after deleting what expired if the backend leaves that to
				// the store.
				if only = s.cappedScopes(); len(only) == 0 && s.expirer == nil {
					continue
				}
			}
			if _, err := s.gc(ctx, only); err != nil && ctx.Err() == nil {
				s.log.Warn("idem: background gc failed", "err", err)
			}
		}
	}
}

// diskSize is the bytes the backend takes on disk (0 unless it is a
// DiskUser).
func (s *Store) diskSize() int64 {
	var n int64
	if s.diskUser != nil {
		_ = s.io(func(Backend) error { n = s.diskUser.DiskBytes(); return nil })
	}
	return n
}
