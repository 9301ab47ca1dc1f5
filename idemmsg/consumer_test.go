package idemmsg_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemmsg"
)

// settlement is what a delivery was told.
type settlement struct {
	how    string // ack, nak, term
	delay  time.Duration
	reason string
}

// acker records how a delivery was settled, and that it was settled once.
type acker struct {
	mu       sync.Mutex
	settled  []settlement
	progress atomic.Int32
	failAck  bool // the ack is lost
}

func (a *acker) record(s settlement) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.settled = append(a.settled, s)
	return nil
}

func (a *acker) Ack(context.Context) error {
	_ = a.record(settlement{how: "ack"})
	if a.failAck {
		return errors.New("ack lost")
	}
	return nil
}
func (a *acker) Nak(_ context.Context, d time.Duration) error {
	return a.record(settlement{how: "nak", delay: d})
}
func (a *acker) Term(_ context.Context, reason string) error {
	return a.record(settlement{how: "term", reason: reason})
}
func (a *acker) InProgress(context.Context) error { a.progress.Add(1); return nil }

func (a *acker) only(t *testing.T) settlement {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	require.Len(t, a.settled, 1, "settled exactly once")
	return a.settled[0]
}

func newScope(t *testing.T, so idem.ScopeOptions, be idem.Backend) *idem.Scope {
	t.Helper()
	opts := idem.Options{InMemory: true, GCInterval: -1}
	if be != nil {
		opts = idem.Options{Backend: be, GCInterval: -1}
	}
	st, err := idem.Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sc, err := st.Scope("payments", so)
	require.NoError(t, err)
	return sc
}

// counter is a handler that counts its runs per message ID.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
	fn   func(ctx context.Context, d idemmsg.Delivery) ([]byte, error)
}

func (c *counter) handle(ctx context.Context, d idemmsg.Delivery) ([]byte, error) {
	c.mu.Lock()
	if c.runs == nil {
		c.runs = map[string]int{}
	}
	c.runs[d.ID]++
	c.mu.Unlock()
	if c.fn != nil {
		return c.fn(ctx, d)
	}
	return []byte("charged " + d.ID), nil
}

func (c *counter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[id]
}

func newConsumer(t *testing.T, sc *idem.Scope, h *counter, opts idemmsg.Options) *idemmsg.Consumer {
	t.Helper()
	c, err := idemmsg.New(sc, h.handle, opts)
	require.NoError(t, err)
	return c
}

func msg(id, body string, attempt int) idemmsg.Delivery {
	return idemmsg.Delivery{ID: id, Body: []byte(body), Attempt: attempt}
}

func TestRedeliveryIsAckedWithoutRunning(t *testing.T) {
	ctx := context.Background()
	h := &counter{}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{})

	lost := &acker{failAck: true}
	out, err := c.Handle(ctx, msg("pay-1", `{"amount":42}`, 1), lost)
	assert.Equal(t, idemmsg.Acked, out)
	assert.ErrorContains(t, err, "ack lost", "the broker's error is returned")
	assert.Equal(t, "ack", lost.only(t).how, "acked after the outcome was stored")

	again := &acker{}
	out, err = c.Handle(ctx, msg("pay-1", `{"amount":42}`, 2), again)
	require.NoError(t, err)
	assert.Equal(t, idemmsg.Replayed, out)
	assert.Equal(t, "ack", again.only(t).how)
	assert.Equal(t, 1, h.count("pay-1"), "the charge ran once")
}

func TestDeliveryWhileTheFirstRunsIsNakedNeverRun(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{})
	h := &counter{fn: func(ctx context.Context, d idemmsg.Delivery) ([]byte, error) {
		close(started)
		<-release
		return nil, nil
	}}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{InProgressDelay: 3 * time.Second})
	first := &acker{}
	done := make(chan idemmsg.Outcome)
	go func() {
		out, _ := c.Handle(ctx, msg("pay-1", "x", 1), first)
		done <- out
	}()
	<-started
	dup := &acker{}
	out, err := c.Handle(ctx, msg("pay-1", "x", 2), dup)
	assert.Equal(t, idemmsg.Deferred, out)
	assert.ErrorIs(t, err, idem.ErrInProgress)
	assert.Equal(t, settlement{how: "nak", delay: 3 * time.Second}, dup.only(t))
	first.mu.Lock()
	assert.Empty(t, first.settled, "not acked before its outcome is stored")
	first.mu.Unlock()
	close(release)
	assert.Equal(t, idemmsg.Acked, <-done)
	assert.Equal(t, 1, h.count("pay-1"))
}

func TestPermanentFailureIsTerminatedOnEveryDelivery(t *testing.T) {
	ctx := context.Background()
	h := &counter{fn: func(context.Context, idemmsg.Delivery) ([]byte, error) {
		return nil, idem.Permanent(errors.New("card declined"))
	}}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{})
	for attempt := 1; attempt <= 3; attempt++ {
		a := &acker{}
		out, err := c.Handle(ctx, msg("pay-1", "x", attempt), a)
		assert.Equal(t, idemmsg.Terminated, out)
		assert.ErrorContains(t, err, "card declined")
		s := a.only(t)
		assert.Equal(t, "term", s.how)
		assert.Contains(t, s.reason, "card declined")
	}
	assert.Equal(t, 1, h.count("pay-1"), "the failure is stored: it does not run again")
}

func TestTransientFailureIsRetriedThenPoisonIsTerminated(t *testing.T) {
	ctx := context.Background()
	var fails atomic.Int32
	fails.Store(1)
	h := &counter{fn: func(_ context.Context, d idemmsg.Delivery) ([]byte, error) {
		if d.ID == "poison" {
			panic("cannot parse")
		}
		if fails.Add(-1) >= 0 {
			return nil, errors.New("gateway timeout")
		}
		return []byte("ok"), nil
	}}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{MaxAttempts: 4})

	a := &acker{}
	out, err := c.Handle(ctx, msg("pay-1", "x", 1), a)
	assert.Equal(t, idemmsg.Deferred, out)
	assert.ErrorContains(t, err, "gateway timeout")
	assert.Equal(t, settlement{how: "nak", delay: 500 * time.Millisecond}, a.only(t))
	a = &acker{}
	out, _ = c.Handle(ctx, msg("pay-1", "x", 2), a)
	assert.Equal(t, idemmsg.Acked, out, "the key was released: the redelivery runs")
	assert.Equal(t, 2, h.count("pay-1"))

	for attempt := 1; attempt <= 4; attempt++ {
		a := &acker{}
		out, err := c.Handle(ctx, msg("poison", "x", attempt), a)
		assert.ErrorContains(t, err, "handler panicked: cannot parse")
		if attempt < 4 {
			assert.Equal(t, idemmsg.Deferred, out)
			assert.Equal(t, settlement{how: "nak", delay: 500 * time.Millisecond << (attempt - 1)}, a.only(t))
		} else {
			assert.Equal(t, idemmsg.Terminated, out, "never an endless loop")
			assert.Contains(t, a.only(t).reason, "gave up after 4 deliveries")
		}
	}
	assert.Equal(t, 4, h.count("poison"))
}

func TestKeyReusedForOtherContentIsTerminated(t *testing.T) {
	ctx := context.Background()
	h := &counter{}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{})
	_, err := c.Handle(ctx, msg("pay-1", "amount 42", 1), &acker{})
	require.NoError(t, err)
	a := &acker{}
	out, err := c.Handle(ctx, msg("pay-1", "amount 43", 1), a)
	assert.Equal(t, idemmsg.Terminated, out)
	assert.ErrorIs(t, err, idem.ErrFingerprintMismatch)
	assert.Equal(t, "term", a.only(t).how)
	assert.Equal(t, 1, h.count("pay-1"))

	a = &acker{}
	out, err = c.Handle(ctx, msg("", "no id", 1), a)
	assert.Equal(t, idemmsg.Terminated, out, "a message that cannot be keyed cannot be run once")
	assert.ErrorContains(t, err, "no ID")
}

func TestByContent(t *testing.T) {
	ctx := context.Background()
	h := &counter{}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{Key: idemmsg.ByContent("Account")})
	with := func(id, body string, account ...string) idemmsg.Delivery {
		return idemmsg.Delivery{ID: id, Body: []byte(body), Header: map[string][]string{"Account": account}, Attempt: 1}
	}
	for _, d := range []idemmsg.Delivery{with("a", "charge 42", "acct_1"), with("b", "charge 42", "acct_1")} {
		_, err := c.Handle(ctx, d, &acker{})
		require.NoError(t, err)
	}
	assert.Equal(t, 1, h.count("a")+h.count("b"), "the same content, published twice, runs once")
	out, err := c.Handle(ctx, with("c", "charge 42", "acct_2"), &acker{})
	require.NoError(t, err)
	assert.Equal(t, idemmsg.Acked, out, "another account's header makes another key")

	k1, _ := idemmsg.ByContent("A", "B")(idemmsg.Delivery{Header: map[string][]string{"A": {""}}})
	k2, _ := idemmsg.ByContent("A", "B")(idemmsg.Delivery{Header: map[string][]string{"B": {""}}})
	assert.NotEqual(t, k1, k2, "headers are told apart")
}

func TestHeartbeatWhileTheHandlerRuns(t *testing.T) {
	h := &counter{fn: func(context.Context, idemmsg.Delivery) ([]byte, error) {
		time.Sleep(120 * time.Millisecond)
		return nil, nil
	}}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{Heartbeat: 20 * time.Millisecond})
	a := &acker{}
	out, err := c.Handle(context.Background(), msg("slow", "x", 1), a)
	require.NoError(t, err)
	assert.Equal(t, idemmsg.Acked, out)
	assert.GreaterOrEqual(t, a.progress.Load(), int32(3))
	n := a.progress.Load()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, n, a.progress.Load(), "no heartbeat after the handler returned")
}

// failingCompletions is a backend whose next completions fail.
type failingCompletions struct {
	idem.Backend
	fail atomic.Int32
}

func (f *failingCompletions) Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	if f.fail.Add(-1) >= 0 {
		return errors.New("injected: completion failed")
	}
	return f.Backend.Complete(ctx, key, owner, value, ttl)
}

func TestOutcomeNotStoredIsNeverAcked(t *testing.T) {
	be, err := idem.OpenBadger(idem.Options{InMemory: true})
	require.NoError(t, err)
	fb := &failingCompletions{Backend: be}
	h := &counter{}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{Orphans: idem.OrphanReport}, fb), h, idemmsg.Options{MaxAttempts: 1})
	fb.fail.Store(1)
	a := &acker{}
	out, err := c.Handle(context.Background(), msg("pay-1", "x", 1), a)
	assert.Equal(t, idemmsg.Deferred, out, "a store failure is not the message's fault: not terminated even at MaxAttempts")
	assert.ErrorContains(t, err, "injected")
	assert.Equal(t, "nak", a.only(t).how)

	a = &acker{}
	out, err = c.Handle(context.Background(), msg("pay-1", "x", 2), a)
	assert.Equal(t, idemmsg.Terminated, out, "under OrphanReport the work may have happened: reconcile")
	assert.ErrorIs(t, err, idem.ErrOutcomeUnknown)
	assert.Equal(t, 1, h.count("pay-1"), "never a second charge")
}

// TestConcurrentRedeliveries delivers 50 messages 6 times each, shuffled,
// from 8 goroutines, redelivering whatever was Nak'ed: every message runs
// once, every delivery is settled once, and all end acknowledged.
func TestConcurrentRedeliveries(t *testing.T) {
	ctx := context.Background()
	h := &counter{fn: func(context.Context, idemmsg.Delivery) ([]byte, error) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		return nil, nil
	}}
	c := newConsumer(t, newScope(t, idem.ScopeOptions{}, nil), h, idemmsg.Options{})
	queue := make(chan idemmsg.Delivery, 1000)
	var pending sync.WaitGroup
	for copy := range 6 {
		for i := range 50 {
			pending.Add(1)
			queue <- msg(fmt.Sprint("pay-", i), fmt.Sprint("body ", i), copy+1)
		}
	}
	var acked sync.Map
	var workers sync.WaitGroup
	for range 8 {
		workers.Go(func() {
			for d := range queue {
				a := &acker{}
				out, _ := c.Handle(ctx, d, a)
				s := a.only(t)
				switch out {
				case idemmsg.Acked, idemmsg.Replayed:
					assert.Equal(t, "ack", s.how)
					acked.Store(d.ID, true)
					pending.Done()
				case idemmsg.Deferred:
					assert.Equal(t, "nak", s.how)
					queue <- d // the broker redelivers
				default:
					t.Errorf("%s: %v", d.ID, out)
					pending.Done()
				}
			}
		})
	}
	pending.Wait()
	close(queue)
	workers.Wait()
	for i := range 50 {
		id := fmt.Sprint("pay-", i)
		assert.Equal(t, 1, h.count(id), id)
		_, ok := acked.Load(id)
		assert.True(t, ok, id)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	sc := newScope(t, idem.ScopeOptions{}, nil)
	h := (&counter{}).handle
	for _, tc := range []struct {
		sc   *idem.Scope
		h    idemmsg.Handler
		opts idemmsg.Options
	}{
		{nil, h, idemmsg.Options{}},
		{sc, nil, idemmsg.Options{}},
		{sc, h, idemmsg.Options{InProgressDelay: -1}},
		{sc, h, idemmsg.Options{Heartbeat: -1}},
	} {
		_, err := idemmsg.New(tc.sc, tc.h, tc.opts)
		assert.Error(t, err)
	}
	c, err := idemmsg.New(sc, h, idemmsg.Options{})
	require.NoError(t, err)
	var nilCtx context.Context // a mistake the compiler lets through
	_, err = c.Handle(nilCtx, msg("a", "b", 1), &acker{})
	assert.Error(t, err)
}

// TestStoppedHandlerIsNotTerminated: a handler that fails because the
// consumer is being stopped (its context ended) puts the message back,
// even at its last allowed delivery: a shutdown is not the message's
// fault.
func TestStoppedHandlerIsNotTerminated(t *testing.T) {
	c, err := idemmsg.New(newScope(t, idem.ScopeOptions{}, nil), func(ctx context.Context, d idemmsg.Delivery) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, idemmsg.Options{MaxAttempts: 3})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	a := &acker{}
	out, err := c.Handle(ctx, idemmsg.Delivery{ID: "m", Body: []byte("x"), Attempt: 3}, a)
	assert.Equal(t, idemmsg.Deferred, out)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, "nak", a.only(t).how)
}
