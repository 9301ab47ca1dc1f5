package idem

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idem/idembadger"
	"github.com/stretchr/testify/require"
)

// modelStore is the reference: a mutex and a map, following the documented
// rules of one scope with the retention and limits of modelOptions.
type modelStore struct {
	mu   sync.Mutex
	recs map[string]modelRecord // by tenant + "/" + key
}

type modelRecord struct {
	state   recordState
	value   string
	fp      []byte
	expires time.Time
}

var modelOptions = ScopeOptions{TTL: 10 * time.Second, FailureTTL: 4 * time.Second, MaxValueSize: 8}

// outcomeKind is what a function passed to Do does.
type outcomeKind int

const (
	returnValue outcomeKind = iota
	returnError
	returnPermanent
	doPanic
)

// modelAnswer is what a call answered, in comparable form.
type modelAnswer struct {
	value    string
	replayed bool
	err      string // "" or a class
	ran      bool
}

func errClass(err error) string {
	var fe *FailureError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &fe):
		return "failure:" + fe.Message
	case errors.Is(err, ErrFingerprintMismatch):
		return "mismatch"
	case errors.Is(err, ErrValueTooLarge):
		return "too large"
	case errors.Is(err, ErrPermanent):
		return "permanent:" + err.Error()
	}
	return "error:" + err.Error()
}

func (m *modelStore) do(now time.Time, id string, fp []byte, kind outcomeKind, v string) modelAnswer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[id]; ok && now.Before(r.expires) {
		if fp != nil && string(fp) != string(r.fp) {
			return modelAnswer{err: "mismatch"}
		}
		switch r.state {
		case stateCompleted:
			return modelAnswer{value: r.value, replayed: true}
		case stateTooLarge:
			return modelAnswer{replayed: true, err: "too large"}
		default:
			return modelAnswer{replayed: true, err: "failure:" + r.value}
		}
	}
	switch kind {
	case returnValue:
		st := stateCompleted
		if len(v) > modelOptions.MaxValueSize {
			st = stateTooLarge
		}
		m.recs[id] = modelRecord{state: st, value: v, fp: fp, expires: now.Add(modelOptions.TTL)}
		return modelAnswer{value: v, ran: true}
	case returnPermanent:
		msg := v[:min(len(v), modelOptions.MaxValueSize)] // stored messages are cut to the limit
		m.recs[id] = modelRecord{state: stateFailed, value: msg, fp: fp, expires: now.Add(modelOptions.FailureTTL)}
		return modelAnswer{err: "permanent:" + v, ran: true}
	case doPanic:
		return modelAnswer{err: "panic", ran: true}
	}
	return modelAnswer{err: "error:" + v, ran: true}
}

// storeDo runs the same call on the real store.
func storeDo(sc *Scope, key string, fp []byte, kind outcomeKind, v string) (ans modelAnswer) {
	fn := func(context.Context) ([]byte, error) {
		ans.ran = true
		switch kind {
		case returnError:
			return nil, errors.New(v)
		case returnPermanent:
			return nil, Permanent(errors.New(v))
		case doPanic:
			panic(v)
		}
		return []byte(v), nil
	}
	defer func() {
		if p := recover(); p != nil {
			ans.err = "panic"
		}
	}()
	res, err := sc.Do(context.Background(), key, fp, fn)
	ans.value, ans.replayed, ans.err = string(res.Value), res.Replayed, errClass(err)
	return ans
}

// storeClaim does the same through Claim and its endings.
func storeClaim(sc *Scope, key string, fp []byte, kind outcomeKind, v string) modelAnswer {
	ctx := context.Background()
	cl, err := sc.Claim(ctx, key, fp)
	if err != nil {
		return modelAnswer{err: errClass(err)}
	}
	if !cl.Owned() {
		res, err := cl.Result()
		return modelAnswer{value: string(res.Value), replayed: res.Replayed, err: errClass(err)}
	}
	ans := modelAnswer{ran: true}
	switch kind {
	case returnValue:
		err = cl.Complete(ctx, []byte(v))
		ans.value = v
	case returnPermanent:
		err = cl.Fail(ctx, errors.New(v))
		ans.err = "permanent:" + v
	case doPanic:
		err = cl.Release(ctx)
		ans.err = "panic"
	default:
		err = cl.Release(ctx)
		ans.err = "error:" + v
	}
	if err != nil {
		return modelAnswer{err: "unexpected: " + err.Error()}
	}
	return ans
}

// TestModel feeds random operation sequences to the store and to the
// reference model and requires the same answer to every call.
func TestModel(t *testing.T) {
	seeds, ops := 12, 400
	if testing.Short() {
		seeds = 3
	}
	// The record cache must not change any answer: off, tiny (constant
	// eviction) and default.
	backends := append([]modelBackend{{"badger", nil}}, modelBackends...)
	// A presence filter sized for a few keys is refilled over and over
	// while the store runs, reopens and collects: answers stay the same.
	t.Run("badger/tiny-filter", func(t *testing.T) {
		tiny := func(tb testing.TB) func() Backend {
			dir := tb.TempDir()
			return func() Backend {
				b, err := idembadger.Open(idembadger.Options{Dir: dir, FilterKeys: 2})
				require.NoError(tb, err)
				return b
			}
		}
		for seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				runModel(t, uint64(seed), ops, 0, tiny)
			})
		}
	})
	for _, be := range backends {
		for _, cache := range []int{-1, 2048, 0} {
			for seed := range seeds {
				t.Run(fmt.Sprintf("%s/cache=%d/seed=%d", be.name, cache, seed), func(t *testing.T) {
					runModel(t, uint64(seed), ops, cache, be.open)
				})
			}
		}
	}
}

// modelBackend is a backend the model test runs against: open returns a
// function that opens the same storage again at each call (nil: Badger in
// a temporary directory).
type modelBackend struct {
	name string
	open func(testing.TB) func() Backend
}

// modelBackends are the backends besides Badger, registered by tests of
// packages that import this one (see RegisterModelBackend).
var modelBackends []modelBackend

func runModel(t *testing.T, seed uint64, ops, cacheBytes int, backend func(testing.TB) func() Backend) {
	rng := rand.New(rand.NewPCG(seed, 0x1de))
	clock := newFakeClock()
	opts := Options{Dir: t.TempDir(), Now: clock.Now, Shards: 4, CacheBytes: cacheBytes, GCInterval: -1}
	var reopen func() Backend
	if backend != nil {
		reopen = backend(t)
		opts.Dir = ""
	}
	open := func() (*Store, *Scope) {
		if reopen != nil {
			opts.Backend = reopen()
		}
		st, err := Open(opts)
		require.NoError(t, err)
		return st, scopeTest(t, st, "model", modelOptions)
	}
	st, sc := open()
	defer func() { _ = st.Close() }()
	model := &modelStore{recs: map[string]modelRecord{}}
	fps := [][]byte{nil, []byte("a"), []byte("b")}
	values := []string{"", "v", "value-8b", "value-9by", strings.Repeat("x", 40)}

	for i := range ops {
		switch r := rng.IntN(100); {
		case r < 10:
			clock.Advance(time.Duration(rng.IntN(4000)) * time.Millisecond)
			continue
		case r < 12:
			require.NoError(t, st.Close())
			st, sc = open()
			continue
		case r < 14: // a collection never changes an answer
			_, err := st.GC(context.Background())
			require.NoError(t, err)
			continue
		}
		tenant := []string{"", "t1", "t2"}[rng.IntN(3)]
		key := fmt.Sprint("k", rng.IntN(6))
		fp := fps[rng.IntN(len(fps))]
		kind := outcomeKind(rng.IntN(4))
		v := values[rng.IntN(len(values))]
		view := sc
		if tenant != "" {
			view = sc.Tenant(tenant)
		}
		want := model.do(clock.Now(), tenant+"/"+key, fp, kind, v)
		var got modelAnswer
		if rng.IntN(2) == 0 {
			got = storeDo(view, key, fp, kind, v)
		} else {
			got = storeClaim(view, key, fp, kind, v)
		}
		require.Equal(t, want, got, "op %d: tenant %q key %q fp %q kind %d value %q", i, tenant, key, fp, kind, v)
	}
	require.Zero(t, st.Stats().InFlight)
}
