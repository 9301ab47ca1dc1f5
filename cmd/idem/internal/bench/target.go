// Package bench measures concurrent check-and-set throughput of idem and of
// the baselines users compare it with, behind one interface, so that the
// Go benchmarks (bench_test.go) and `idem bench` run the same code.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/redis/go-redis/v9"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemredis"
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

// The targets. The idem ones are idem itself; the others are baselines.
const (
	IdemDo    Kind = "idem-do"    // Scope.Do
	IdemClaim Kind = "idem-claim" // Scope.Claim + Claim.Complete
	// IdemAppend is Scope.DoAppend into a buffer from a sync.Pool, as a
	// hot path that writes a replayed value out and reuses the buffer:
	// Do less the allocation of each replay's copy.
	IdemAppend  Kind = "idem-append"
	BadgerNaive Kind = "badger-naive" // db.Update{Get; Set}, default options
	MemSharded  Kind = "mem-sharded"  // a sharded mutex+map: the in-memory ceiling
	BadgerWrite Kind = "badger-write" // db.Update{Set}: a blind write, the least a new key costs on Badger
	// BadgerIngest is a group commit of blind writes, conflict detection
	// off, default options: the most any store built on Badger can write
	// new keys, its ingest ceiling.
	BadgerIngest Kind = "badger-ingest"

	IdemRedis  Kind = "idem-redis"  // Scope.Do on the idemredis backend
	RedisSetNX Kind = "redis-setnx" // SET key value PX ttl NX GET with go-redis
)

// Kinds lists the embedded targets, idem first; RedisKinds the Redis ones.
// More lists the embedded targets run only when named. Blind lists the targets that write without looking, which are not
// check-and-set: they show what a store's writes alone cost, and only new
// keys (the unique workload) make sense for them.
var (
	Kinds      = []Kind{IdemDo, IdemClaim, BadgerNaive, MemSharded}
	RedisKinds = []Kind{IdemRedis, RedisSetNX}
	Blind      = []Kind{BadgerWrite, BadgerIngest}
	More       = append([]Kind{IdemAppend}, Blind...)
)

// Env is where targets keep their data.
type Env struct {
	Dir         string // a fresh directory the embedded targets may fill
	Sync        bool   // SyncWrites for the embedded targets
	RedisAddr   string // the server of the Redis targets
	PostgresURL string // the database of the Postgres targets
}

// Open creates a target of kind in env.
func Open(kind Kind, env Env) (Target, error) {
	dir, syncWrites := env.Dir, env.Sync
	switch kind {
	case IdemRedis, RedisSetNX:
		return openRedis(kind, env.RedisAddr)
	case IdemPG, PGClaim, IdemPGTx, PGInsert:
		return openPostgres(kind, env.PostgresURL)
	case IdemDo, IdemClaim, IdemAppend:
		st, err := idem.Open(idem.Options{Dir: dir, SyncWrites: syncWrites})
		if err != nil {
			return nil, err
		}
		sc, err := st.Scope("bench", idem.ScopeOptions{TTL: TTL})
		if err != nil {
			return nil, errors.Join(err, st.Close())
		}
		t := &idemTarget{st: st, sc: sc, claim: kind == IdemClaim}
		if kind == IdemAppend {
			t.buffers = &sync.Pool{New: func() any { return new([]byte) }}
		}
		return t, nil
	case BadgerNaive, BadgerWrite:
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(syncWrites))
		if err != nil {
			return nil, err
		}
		return &badgerTarget{db: db, blind: kind == BadgerWrite}, nil
	case BadgerIngest:
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(syncWrites).WithDetectConflicts(false))
		if err != nil {
			return nil, err
		}
		return &ingestTarget{db: db}, nil
	case MemSharded:
		return newMemTarget(), nil
	}
	return nil, fmt.Errorf("bench: unknown target %q", kind)
}

type idemTarget struct {
	st      *idem.Store
	sc      *idem.Scope
	claim   bool
	buffers *sync.Pool // of *[]byte, for DoAppend; nil: Do
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
	fn := func(context.Context) ([]byte, error) { return value, nil }
	if t.buffers == nil {
		res, err := t.sc.Do(ctx, string(key), nil, fn)
		return err == nil && !res.Replayed, err
	}
	buf := t.buffers.Get().(*[]byte)
	res, err := t.sc.DoAppend(ctx, (*buf)[:0], string(key), nil, fn)
	if res.Replayed {
		*buf = res.Value // its array, grown if need be; a first execution's value is fn's own
	}
	t.buffers.Put(buf)
	return err == nil && !res.Replayed, err
}

func (t *idemTarget) Close() error { return t.st.Close() }

// badgerTarget is what users write by hand: one Update doing Get and, on a
// miss, Set; retried on a conflict. A blind one only sets.
type badgerTarget struct {
	db    *badger.DB
	blind bool
}

func (t *badgerTarget) Claim(_ context.Context, key, value []byte) (bool, error) {
	if t.blind {
		err := t.db.Update(func(txn *badger.Txn) error {
			return txn.SetEntry(badger.NewEntry(key, value).WithTTL(TTL))
		})
		return err == nil, err
	}
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

// ingestTarget commits concurrent writes together: a writer that finds
// no commit running commits every write waiting, its own included, in
// one transaction, and the others wait for it.
type ingestTarget struct {
	db        *badger.DB
	mu        sync.Mutex
	pending   []ingestWrite
	committer bool // a writer is committing
}

type ingestWrite struct {
	key, value []byte
	done       chan error
}

func (t *ingestTarget) Claim(_ context.Context, key, value []byte) (bool, error) {
	w := ingestWrite{key: key, value: value, done: make(chan error, 1)}
	t.mu.Lock()
	t.pending = append(t.pending, w)
	if t.committer {
		t.mu.Unlock()
		err := <-w.done
		return err == nil, err
	}
	t.committer = true
	for len(t.pending) > 0 {
		batch := t.pending
		t.pending = nil
		t.mu.Unlock()
		err := t.commit(batch)
		for _, b := range batch {
			b.done <- err
		}
		t.mu.Lock()
	}
	t.committer = false
	t.mu.Unlock()
	err := <-w.done
	return err == nil, err
}

// commit writes batch in one transaction, or more when it is too large
// for one.
func (t *ingestTarget) commit(batch []ingestWrite) error {
	txn := t.db.NewTransaction(true)
	for _, w := range batch {
		err := txn.SetEntry(badger.NewEntry(w.key, w.value).WithTTL(TTL))
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = t.db.NewTransaction(true)
			err = txn.SetEntry(badger.NewEntry(w.key, w.value).WithTTL(TTL))
		}
		if err != nil {
			txn.Discard()
			return err
		}
	}
	return txn.Commit()
}

func (t *ingestTarget) Close() error { return t.db.Close() }

// openRedis connects a Redis target, with keys of its own that Close
// deletes.
func openRedis(kind Kind, addr string) (Target, error) {
	if addr == "" {
		return nil, fmt.Errorf("bench: target %s needs a Redis address", kind)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
	t := &redisTarget{rdb: rdb, prefix: fmt.Sprintf("bench:%08x:", rand.Uint32())}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		return nil, errors.Join(err, rdb.Close())
	}
	if kind == RedisSetNX {
		return t, nil
	}
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: t.prefix})
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	st, err := idem.Open(idem.Options{Backend: be})
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	sc, err := st.Scope("bench", idem.ScopeOptions{TTL: TTL})
	if err != nil {
		return nil, errors.Join(err, st.Close(), t.Close())
	}
	t.idem = &idemTarget{st: st, sc: sc}
	return t, nil
}

// redisTarget is raw Redis (what users write by hand: one SET NX GET per
// claim, which returns the existing value when the key is taken), or idem
// on Redis.
type redisTarget struct {
	rdb    *redis.Client
	prefix string
	idem   *idemTarget // nil: raw SET NX
}

func (t *redisTarget) Claim(ctx context.Context, key, value []byte) (bool, error) {
	if t.idem != nil {
		return t.idem.Claim(ctx, key, value)
	}
	err := t.rdb.SetArgs(ctx, t.prefix+string(key), value, redis.SetArgs{Mode: "NX", Get: true, TTL: TTL}).Err()
	if errors.Is(err, redis.Nil) {
		return true, nil // nothing was there: set
	}
	return false, err
}

// serverTarget is a target whose server reports the CPU time it has used.
type serverTarget interface {
	ServerCPU(ctx context.Context) (time.Duration, error)
}

// ServerCPU is the Redis server's CPU time, user and system, from INFO.
func (t *redisTarget) ServerCPU(ctx context.Context) (time.Duration, error) {
	info, err := t.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, field := range []string{"used_cpu_user:", "used_cpu_sys:"} {
		i := strings.Index(info, "\n"+field)
		if i < 0 {
			return 0, fmt.Errorf("bench: Redis INFO cpu without %s", field)
		}
		v := info[i+1+len(field):]
		v = strings.TrimSpace(v[:strings.IndexAny(v+"\r\n", "\r\n")])
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: Redis INFO %s%q: %w", field, v, err)
		}
		total += time.Duration(sec * float64(time.Second))
	}
	return total, nil
}

// Close deletes the target's keys and disconnects.
func (t *redisTarget) Close() error {
	var err error
	if t.idem != nil {
		err = t.idem.Close()
	}
	ctx := context.Background()
	iter := t.rdb.Scan(ctx, 0, t.prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			t.rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		t.rdb.Unlink(ctx, batch...)
	}
	return errors.Join(err, iter.Err(), t.rdb.Close())
}

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

// Prepare opens a target of kind in env with the keys of workload w
// prefilled. The prefill is written without SyncWrites (reopening with it
// afterwards) so that durable rows do not spend minutes on setup.
func Prepare(ctx context.Context, kind Kind, w Workload, env Env, valueSize int) (Target, *Keys, error) {
	keys, err := NewKeys(w, valueSize)
	if err != nil {
		return nil, nil, err
	}
	fill := env
	fill.Sync = false
	t, err := Open(kind, fill)
	if err != nil {
		return nil, nil, err
	}
	if err := keys.Prefill(ctx, t, valueSize); err != nil {
		return nil, nil, errors.Join(err, t.Close())
	}
	if !env.Sync || !kind.Syncs() {
		return t, keys, nil
	}
	if err := t.Close(); err != nil {
		return nil, nil, err
	}
	t, err = Open(kind, env)
	return t, keys, err
}

// Fits reports whether the target measures anything in workload w: a
// blind one would overwrite the records that dup90 and hot repeat.
func (k Kind) Fits(w Workload) bool {
	return w == Unique || !slices.Contains(Blind, k) && k != PGInsert
}

// Syncs reports whether SyncWrites applies to the target: the embedded
// stores on disk.
func (k Kind) Syncs() bool {
	return k == IdemDo || k == IdemClaim || k == IdemAppend || k == BadgerNaive || k == BadgerWrite || k == BadgerIngest
}
