package idemnats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemmsg"
	"github.com/idemkit/idem/idemnats/natstest"
)

func TestMain(m *testing.M) { natstest.Main(m, "idemnats") }

// fixture is a stream of the test's own, a durable consumer on it, and a
// store whose scope keeps the outcomes.
type fixture struct {
	t      *testing.T
	js     jetstream.JetStream
	stream jetstream.Stream
	cons   jetstream.Consumer
	scope  *idem.Scope
	name   string

	mu       sync.Mutex
	effects  map[string]int // runs of the handler by message body
	outcomes map[idemmsg.Outcome]int
}

func newFixture(t *testing.T, scfg jetstream.StreamConfig, ccfg jetstream.ConsumerConfig) *fixture {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(natstest.Conn(t))
	require.NoError(t, err)
	f := &fixture{t: t, js: js, name: natstest.Name(t), effects: map[string]int{}, outcomes: map[idemmsg.Outcome]int{}}
	scfg.Name, scfg.Subjects = f.name, []string{f.name + ".>"}
	f.stream, err = js.CreateStream(ctx, scfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), f.name) })
	ccfg.Durable, ccfg.AckPolicy = "worker", jetstream.AckExplicitPolicy
	f.cons, err = f.stream.CreateOrUpdateConsumer(ctx, ccfg)
	require.NoError(t, err)
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	f.scope, err = st.Scope("payments", idem.ScopeOptions{})
	require.NoError(t, err)
	return f
}

func (f *fixture) publish(body string, opts ...jetstream.PublishOpt) {
	f.t.Helper()
	_, err := f.js.Publish(context.Background(), f.name+".pay", []byte(body), opts...)
	require.NoError(f.t, err)
}

// consumer returns a consumer whose handler counts its runs by body and
// then calls fn (if any).
func (f *fixture) consumer(opts Options, fn func(ctx context.Context, d idemmsg.Delivery) error) *Consumer {
	f.t.Helper()
	observe := opts.Observe
	opts.Observe = func(d idemmsg.Delivery, out idemmsg.Outcome, err error) {
		f.mu.Lock()
		f.outcomes[out]++
		f.mu.Unlock()
		if observe != nil {
			observe(d, out, err)
		}
	}
	c, err := New(f.scope, f.stream, f.cons, func(ctx context.Context, d idemmsg.Delivery) ([]byte, error) {
		f.mu.Lock()
		f.effects[string(d.Body)]++
		f.mu.Unlock()
		if fn != nil {
			return nil, fn(ctx, d)
		}
		return nil, nil
	}, opts)
	require.NoError(f.t, err)
	return c
}

// run runs c until every message is settled, and stops it.
func (f *fixture) run(c *Consumer) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	f.waitSettled(30 * time.Second)
	cancel()
	require.NoError(f.t, <-done)
}

// waitSettled waits until the consumer has nothing pending or unacked. A
// request for the consumer's state that times out (the server answered
// none within 5 s once, on a loaded machine) is asked again, within limit.
func (f *fixture) waitSettled(limit time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		info, err := f.cons.Info(context.Background())
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			require.NoError(f.t, err)
		}
		if time.Now().After(deadline) {
			require.NoError(f.t, err)
			f.t.Fatalf("not settled after %v: %d pending, %d unacked", limit, info.NumPending, info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) effect(body string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.effects[body]
}

func (f *fixture) outcome(o idemmsg.Outcome) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outcomes[o]
}

func TestEveryMessageRunsOnce(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{})
	for i := range 100 {
		f.publish(fmt.Sprint("pay ", i), jetstream.WithMsgID(fmt.Sprint("pay-", i)))
	}
	f.run(f.consumer(Options{Workers: 4}, nil))
	for i := range 100 {
		assert.Equal(t, 1, f.effect(fmt.Sprint("pay ", i)))
	}
	assert.Equal(t, 100, f.outcome(idemmsg.Acked))
}

// TestDuplicatePublishes: JetStream drops a publish with a Nats-Msg-Id it
// saw within its Duplicates window; after the window the stream takes the
// duplicate, and the consumer runs it once all the same. Without an ID,
// the stream sequence keys messages (every publish runs), and ByContent
// keys them by content (a duplicate runs once).
func TestDuplicatePublishes(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{Duplicates: 200 * time.Millisecond}, jetstream.ConsumerConfig{})
	f.publish("pay 1", jetstream.WithMsgID("pay-1"))
	f.publish("pay 1", jetstream.WithMsgID("pay-1")) // inside the window: dropped by the server
	info, err := f.stream.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Msgs, "the server dropped the duplicate publish")
	time.Sleep(400 * time.Millisecond)
	f.publish("pay 1", jetstream.WithMsgID("pay-1")) // after the window: stored again
	f.publish("pay 2")
	f.publish("pay 2") // no ID: two messages
	info, err = f.stream.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(4), info.State.Msgs)

	f.run(f.consumer(Options{}, nil))
	assert.Equal(t, 1, f.effect("pay 1"), "the duplicate after the window is a replay")
	assert.Equal(t, 2, f.effect("pay 2"), "without an ID, each publish is its own message")
	assert.Equal(t, 1, f.outcome(idemmsg.Replayed))

	g := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{})
	g.publish("pay 3")
	g.publish("pay 3")
	g.run(g.consumer(Options{Options: idemmsg.Options{Key: idemmsg.ByContent()}}, nil))
	assert.Equal(t, 1, g.effect("pay 3"), "keyed by content, the duplicate runs once")
}

// droppedAcks loses acks, as a connection that fails right after the
// handler would.
type droppedAcks struct{ idemmsg.Acker }

func (droppedAcks) Ack(context.Context) error { return nil }

func TestLostAckIsReplayedAfterAckWait(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{AckWait: 500 * time.Millisecond})
	f.publish("pay 1", jetstream.WithMsgID("pay-1"))
	c := f.consumer(Options{}, nil)
	batch, err := f.cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	m := <-batch.Messages()
	require.NotNil(t, m)
	d, err := c.delivery(m)
	require.NoError(t, err)
	out, err := c.inner.Handle(context.Background(), d, droppedAcks{acker{m}})
	require.NoError(t, err)
	require.Equal(t, idemmsg.Acked, out, "the outcome is stored; the ack never reaches the server")

	f.run(c) // the server redelivers after AckWait
	assert.Equal(t, 1, f.effect("pay 1"))
	assert.Equal(t, 1, f.outcome(idemmsg.Replayed), "the redelivery is acked without running")
}

func TestAckWaitExpiringMidHandler(t *testing.T) {
	slow := func(ctx context.Context, d idemmsg.Delivery) error {
		if d.Attempt == 1 {
			time.Sleep(1500 * time.Millisecond)
		}
		return nil
	}
	t.Run("no heartbeat", func(t *testing.T) {
		f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{AckWait: 500 * time.Millisecond})
		f.publish("pay 1", jetstream.WithMsgID("pay-1"))
		c := f.consumer(Options{Workers: 2, Options: idemmsg.Options{Heartbeat: -1, InProgressDelay: 200 * time.Millisecond}}, slow)
		f.run(c)
		assert.Equal(t, 1, f.effect("pay 1"), "redelivered while it ran: never run twice")
		assert.Positive(t, f.outcome(idemmsg.Deferred), "the redelivery found it in progress")
		assert.Equal(t, 1, f.outcome(idemmsg.Acked))
	})
	t.Run("heartbeat", func(t *testing.T) {
		f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{AckWait: 500 * time.Millisecond})
		f.publish("pay 1", jetstream.WithMsgID("pay-1"))
		var attempts atomic.Int32
		c := f.consumer(Options{Workers: 2, Observe: func(d idemmsg.Delivery, _ idemmsg.Outcome, _ error) {
			attempts.Store(int32(max(int(attempts.Load()), d.Attempt)))
		}}, slow)
		f.run(c)
		assert.Equal(t, 1, f.effect("pay 1"))
		assert.Equal(t, int32(1), attempts.Load(), "InProgress acks kept the server from redelivering")
		assert.Zero(t, f.outcome(idemmsg.Deferred))
	})
}

func TestPoisonMessageEndsTerminated(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{})
	f.publish("poison", jetstream.WithMsgID("poison"))
	f.publish("fine", jetstream.WithMsgID("fine"))
	c := f.consumer(Options{Options: idemmsg.Options{MaxAttempts: 3, RetryDelay: func(int) time.Duration { return 50 * time.Millisecond }}},
		func(_ context.Context, d idemmsg.Delivery) error {
			if string(d.Body) == "poison" {
				panic("cannot decode")
			}
			return nil
		})
	f.run(c)
	assert.Equal(t, 3, f.effect("poison"), "three deliveries, then Term")
	assert.Equal(t, 1, f.effect("fine"))
	assert.Equal(t, 1, f.outcome(idemmsg.Terminated))
	assert.Equal(t, 2, f.outcome(idemmsg.Deferred))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 3, f.effect("poison"), "never delivered again")
}

func TestPermanentFailureIsTerminated(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{})
	f.publish("declined", jetstream.WithMsgID("p1"))
	f.run(f.consumer(Options{}, func(context.Context, idemmsg.Delivery) error {
		return idem.Permanent(errors.New("card declined"))
	}))
	assert.Equal(t, 1, f.effect("declined"))
	assert.Equal(t, 1, f.outcome(idemmsg.Terminated))
}

// TestBatchCrashRerunsOnlyTheUnfinished: of a batch of ten, the first
// five are handled and the consumer "dies" (its connection closes without
// settling the rest); a new consumer runs only the other five.
func TestBatchCrashRerunsOnlyTheUnfinished(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{AckWait: 500 * time.Millisecond})
	for i := range 10 {
		f.publish(fmt.Sprint("pay ", i), jetstream.WithMsgID(fmt.Sprint("pay-", i)))
	}
	c := f.consumer(Options{}, nil)
	batch, err := f.cons.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	handled := 0
	for m := range batch.Messages() {
		if handled == 5 {
			break // the rest of the batch is never settled
		}
		d, err := c.delivery(m)
		require.NoError(t, err)
		_, err = c.inner.Handle(context.Background(), d, droppedAcks{acker{m}}) // and its acks were lost too
		require.NoError(t, err)
		handled++
	}
	f.run(f.consumer(Options{}, nil))
	for i := range 10 {
		assert.Equal(t, 1, f.effect(fmt.Sprint("pay ", i)), "pay %d", i)
	}
	assert.Equal(t, 5, f.outcome(idemmsg.Replayed))
	assert.Equal(t, 5, f.outcome(idemmsg.Acked))
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{})
	h := func(context.Context, idemmsg.Delivery) ([]byte, error) { return nil, nil }
	_, err := New(f.scope, nil, f.cons, h, Options{})
	assert.Error(t, err)
	none, err := f.stream.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: "noack", AckPolicy: jetstream.AckNonePolicy})
	require.NoError(t, err)
	_, err = New(f.scope, f.stream, none, h, Options{})
	assert.ErrorContains(t, err, "explicit acks")
	_, err = New(f.scope, f.stream, f.cons, h, Options{Workers: -1})
	assert.Error(t, err)
}

func TestRunEndsWhenTheConsumerIsDeleted(t *testing.T) {
	f := newFixture(t, jetstream.StreamConfig{}, jetstream.ConsumerConfig{})
	c := f.consumer(Options{}, nil)
	done := make(chan error)
	go func() { done <- c.Run(context.Background()) }()
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, f.stream.DeleteConsumer(context.Background(), "worker"))
	select {
	case err := <-done:
		assert.Error(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run went on after its consumer was deleted")
	}
}
