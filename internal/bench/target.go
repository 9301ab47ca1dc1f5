// Package bench measures concurrent check-and-set throughput of idem and of
// the baselines users compare it with, behind one interface, so that the
// Go benchmarks (bench_test.go) and `idem bench` run the same code.
package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"

	"github.com/idemkit/idem"
)

// TTL is the retention every target gives a claimed key.
const TTL = time.Hour

// Target is one implementation of check-and-set under test.
type Target interface {
	// Claim stores value under key if the key is new, and reports whether
	// this call did (false: the key existed and its record was returned).
	Claim(ctx context.Context, key, value []byte) (claimed bool, err error)
	Close() error
}

// Kind names a target.
type Kind string

// The targets. The first two are idem itself; the others are baselines.
const (
	IdemDo      Kind = "idem-do"      // Scope.Do
	IdemClaim   Kind = "idem-claim"   // Scope.Claim + Claim.Complete
	BadgerNaive Kind = "badger-naive" // db.Update{Get; Set}, default options
	MemSharded  Kind = "mem-sharded"  // a sharded mutex+map: the in-memory ceiling
)

// Kinds lists every target, idem first.
var Kinds = []Kind{IdemDo, IdemClaim, BadgerNaive, MemSharded}

// Open creates a target of kind in dir (a fresh directory it may fill).
func Open(kind Kind, dir string, sync bool) (Target, error) {
	switch kind {
	case IdemDo, IdemClaim:
		st, err := idem.Open(idem.Options{Dir: dir, SyncWrites: sync})
		if err != nil {
			return nil, err
		}
		sc, err := st.Scope("bench", idem.ScopeOptions{TTL: TTL})
		if err != nil {
			return nil, errors.Join(err, st.Close())
		}
		return &idemTarget{st: st, sc: sc, claim: kind == IdemClaim}, nil
	case BadgerNaive:
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(sync))
		if err != nil {
			return nil, err
		}
		return &badgerTarget{db: db}, nil
	case MemSharded:
		return newMemTarget(), nil
	}
	return nil, fmt.Errorf("bench: unknown target %q", kind)
}

type idemTarget struct {
	st    *idem.Store
	sc    *idem.Scope
	claim bool
}

func (t *idemTarget) Claim(ctx context.Context, key, value []byte) (bool, error) {
	if t.claim {
		cl, err := t.sc.Claim(ctx, string(key), nil)
		if err != nil {
			return false, err
		}
		if !cl.Owned() {
			_, err := cl.Result()
			return false, err
		}
		return true, cl.Complete(ctx, value)
	}
	res, err := t.sc.Do(ctx, string(key), nil, func(context.Context) ([]byte, error) { return value, nil })
	return err == nil && !res.Replayed, err
}

func (t *idemTarget) Close() error { return t.st.Close() }

// badgerTarget is what users write by hand: one Update doing Get and, on a
// miss, Set; retried on a conflict.
type badgerTarget struct{ db *badger.DB }

func (t *badgerTarget) Claim(_ context.Context, key, value []byte) (bool, error) {
	for {
		claimed := false
		err := t.db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err == nil {
				return item.Value(func([]byte) error { return nil })
			}
			if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			claimed = true
			return txn.SetEntry(badger.NewEntry(key, value).WithTTL(TTL))
		})
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		return claimed, err
	}
}

func (t *badgerTarget) Close() error { return t.db.Close() }

// memTarget is the in-process ceiling: 256 shards of mutex+map.
type memTarget struct{ shards [256]memShard }

type memShard struct {
	mu sync.Mutex // guards m
	m  map[string]memEntry
	_  [40]byte
}

type memEntry struct {
	value   []byte
	expires int64
}

func newMemTarget() *memTarget {
	t := &memTarget{}
	for i := range t.shards {
		t.shards[i].m = make(map[string]memEntry)
	}
	return t
}

func (t *memTarget) Claim(_ context.Context, key, value []byte) (bool, error) {
	sh := &t.shards[xxhash.Sum64(key)&255]
	now := time.Now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[string(key)]; ok && e.expires > now {
		return false, nil
	}
	sh.m[string(key)] = memEntry{value: append([]byte(nil), value...), expires: now + int64(TTL)}
	return true, nil
}

func (t *memTarget) Close() error { return nil }

// Prepare opens a target of kind in dir with the keys of workload w
// prefilled. The prefill is written without SyncWrites (reopening with it
// afterwards) so that durable rows do not spend minutes on setup.
func Prepare(ctx context.Context, kind Kind, w Workload, dir string, sync bool, valueSize int) (Target, *Keys, error) {
	keys, err := NewKeys(w, valueSize)
	if err != nil {
		return nil, nil, err
	}
	t, err := Open(kind, dir, false)
	if err != nil {
		return nil, nil, err
	}
	if err := keys.Prefill(ctx, t, valueSize); err != nil {
		return nil, nil, errors.Join(err, t.Close())
	}
	if !sync || kind == MemSharded {
		return t, keys, nil
	}
	if err := t.Close(); err != nil {
		return nil, nil, err
	}
	t, err = Open(kind, dir, true)
	return t, keys, err
}
