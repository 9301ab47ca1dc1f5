package backendtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/internal/testenv"
)

// modelStore is the reference: a mutex and a map, following the documented
// rules of one scope with the retention and limits of modelOptions.
type modelStore struct {
	mu   sync.Mutex
	recs map[string]modelRecord // by tenant + "/" + key
}

type modelRecord struct {
	state   idem.RecordState
	value   string
	fp      []byte
	expires time.Time
}

var modelOptions = idem.ScopeOptions{TTL: 10 * time.Second, FailureTTL: 4 * time.Second, MaxValueSize: 8}

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
	var fe *idem.FailureError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &fe):
		return "failure:" + fe.Message
	case errors.Is(err, idem.ErrFingerprintMismatch):
		return "mismatch"
	case errors.Is(err, idem.ErrValueTooLarge):
		return "too large"
	case errors.Is(err, idem.ErrPermanent):
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
		case idem.StateCompleted:
			return modelAnswer{value: r.value, replayed: true}
		case idem.StateTooLarge:
			return modelAnswer{replayed: true, err: "too large"}
		default:
			return modelAnswer{replayed: true, err: "failure:" + r.value}
		}
	}
	switch kind {
	case returnValue:
		st := idem.StateCompleted
		if len(v) > modelOptions.MaxValueSize {
			st = idem.StateTooLarge
		}
		m.recs[id] = modelRecord{state: st, value: v, fp: fp, expires: now.Add(modelOptions.TTL)}
		return modelAnswer{value: v, ran: true}
	case returnPermanent:
		msg := v[:min(len(v), modelOptions.MaxValueSize)] // stored messages are cut to the limit
		m.recs[id] = modelRecord{state: idem.StateFailed, value: msg, fp: fp, expires: now.Add(modelOptions.FailureTTL)}
		return modelAnswer{err: "permanent:" + v, ran: true}
	case doPanic:
		return modelAnswer{err: "panic", ran: true}
	}
	return modelAnswer{err: "error:" + v, ran: true}
}

// storeDo runs the same call on the real store.
func storeDo(sc *idem.Scope, key string, fp []byte, kind outcomeKind, v string) (ans modelAnswer) {
	fn := func(context.Context) ([]byte, error) {
		ans.ran = true
		switch kind {
		case returnError:
			return nil, errors.New(v)
		case returnPermanent:
			return nil, idem.Permanent(errors.New(v))
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
func storeClaim(sc *idem.Scope, key string, fp []byte, kind outcomeKind, v string) modelAnswer {
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

// RunModel (3 seeds, 12 with IDEM_LONG=1) feeds random sequences of calls (Do and Claim with every
// outcome, on several tenants and fingerprints, with the store's clock
// moving, reopens and collections in between) to a store on the storage
// newStorage opens and to a reference model of the documented rules, and
// requires the same answer to every call, with the record cache off, tiny
// (constant eviction) and at its default. newStorage returns a function
// that opens the same storage again at each call.
func RunModel(t *testing.T, newStorage func(testing.TB) func() backend.Backend) {
	seeds, ops := 3, 400
	if testenv.IsLong() {
		seeds = 12
	}
	for _, cache := range []int{-1, 2048, 0} {
		for seed := range seeds {
			t.Run(fmt.Sprintf("cache=%d/seed=%d", cache, seed), func(t *testing.T) {
				runModel(t, uint64(seed), ops, cache, newStorage)
			})
		}
	}
}

func runModel(t *testing.T, seed uint64, ops, cacheBytes int, newStorage func(testing.TB) func() backend.Backend) {
	rng := rand.New(rand.NewPCG(seed, 0x1de))
	clock := &modelClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	opts := idem.Options{Now: clock.Now, Shards: 4, CacheBytes: cacheBytes, GCInterval: -1}
	reopen := newStorage(t)
	open := func() (*idem.Store, *idem.Scope) {
		opts.Backend = reopen()
		st, err := idem.Open(opts)
		require.NoError(t, err)
		sc, err := st.Scope("model", modelOptions)
		require.NoError(t, err)
		return st, sc
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

// modelClock is the store's clock in the model test: it moves only when
// the test says so.
type modelClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *modelClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *modelClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
