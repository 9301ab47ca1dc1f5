// Package idemnats runs the effect of a NATS JetStream message once per
// key, through package idemmsg: a pull consumer with explicit acks whose
// redeliveries — after a lost ack, an expired AckWait, a consumer killed
// mid-message, several consumers on one durable — are acknowledged
// without running again.
//
//	stream, _ := js.Stream(ctx, "PAYMENTS")
//	cons, _ := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
//		Durable: "charger", AckPolicy: jetstream.AckExplicitPolicy,
//	})
//	c, err := idemnats.New(payments, stream, cons, charge, idemnats.Options{})
//	err = c.Run(ctx) // until ctx ends
//
// A message is keyed by its Nats-Msg-Id header when the publisher set one,
// and otherwise by its place in the stream (the stream's name, creation
// time and sequence: a stream deleted and made again starts new keys).
//
// # Publish-side and consumer-side deduplication
//
// JetStream drops a publish whose Nats-Msg-Id it has seen within the
// stream's Duplicates window (2 minutes by default): that is deduplication
// of publishes, for as long as the window, and it never sees a message
// delivered twice to a consumer. idemnats deduplicates deliveries, for as
// long as the scope keeps its records (24 hours by default): redeliveries
// of one stored message always, and duplicate publishes too when they
// carry the same Nats-Msg-Id (or, with [idemmsg.ByContent], the same
// content) — also the ones that arrive after the window has passed.
// Publishers should set Nats-Msg-Id; consumers should use idemnats.
package idemnats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemmsg"
)

// Options configures a [Consumer].
type Options struct {
	// Options are idemmsg's: the key, tenant and fingerprint of a
	// delivery, delays, MaxAttempts. A nil Key means the Nats-Msg-Id
	// header, or else the stream sequence. Heartbeat zero means a third
	// of the consumer's AckWait (an InProgress ack keeps a long handler's
	// message from being redelivered meanwhile); negative sends none.
	idemmsg.Options

	// Workers is how many messages are handled at once. Zero means 1.
	Workers int
	// Prefetch is how many messages are pulled ahead of the workers. Zero
	// means twice Workers.
	Prefetch int
	// Observe, if set, is told how every delivery ended, with the error
	// behind a deferral or termination (and a failed ack).
	Observe func(d idemmsg.Delivery, out idemmsg.Outcome, err error)
}

// Consumer handles the messages of a JetStream pull consumer once per key.
type Consumer struct {
	inner    *idemmsg.Consumer
	cons     jetstream.Consumer
	epoch    string // the stream's name and creation time, in sequence keys
	workers  int
	prefetch int
	observe  func(idemmsg.Delivery, idemmsg.Outcome, error)
}

// MsgIDHeader is the header a publisher sets to give a message its
// identity (jetstream.WithMsgID sets it).
const MsgIDHeader = "Nats-Msg-Id"

// New returns a consumer that runs handler for the messages of cons, a
// consumer of stream with explicit acks, keeping outcomes in scope.
func New(scope *idem.Scope, stream jetstream.Stream, cons jetstream.Consumer, handler idemmsg.Handler, opts Options) (*Consumer, error) {
	if stream == nil || cons == nil {
		return nil, errors.New("idemnats: New needs a stream and a consumer")
	}
	info, sinfo := cons.CachedInfo(), stream.CachedInfo()
	switch {
	case info == nil || sinfo == nil:
		return nil, errors.New("idemnats: the stream and consumer handles have no info (get them from jetstream calls)")
	case info.Stream != sinfo.Config.Name:
		return nil, fmt.Errorf("idemnats: consumer %q is on stream %q, not %q", info.Name, info.Stream, sinfo.Config.Name)
	case info.Config.AckPolicy != jetstream.AckExplicitPolicy:
		return nil, fmt.Errorf("idemnats: consumer %q must use explicit acks (AckExplicitPolicy), not %v", info.Name, info.Config.AckPolicy)
	case opts.Workers < 0 || opts.Prefetch < 0:
		return nil, errors.New("idemnats: Workers and Prefetch must not be negative")
	}
	switch {
	case opts.Heartbeat < 0:
		opts.Heartbeat = 0
	case opts.Heartbeat == 0 && info.Config.AckWait > 0:
		opts.Heartbeat = info.Config.AckWait / 3
	case opts.Heartbeat == 0:
		opts.Heartbeat = 10 * time.Second // a third of the server's default AckWait
	}
	inner, err := idemmsg.New(scope, handler, opts.Options)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		inner: inner, cons: cons, workers: max(opts.Workers, 1), observe: opts.Observe,
		epoch: fmt.Sprintf("%s.%d", sinfo.Config.Name, sinfo.Created.UnixNano()),
	}
	c.prefetch = opts.Prefetch
	if c.prefetch == 0 {
		c.prefetch = 2 * c.workers
	}
	return c, nil
}

// pullExpiry is how long one pull request waits for messages. A pull that
// yields nothing although messages are pending (seen under load: the
// consumer got its first batch, then nothing) is replaced within it, at
// its expiry or after two missed heartbeats at half the expiry each: with
// nats.go's default expiry of 30 s, a consumer stood still for 30 s.
const pullExpiry = 5 * time.Second

// Run pulls messages and handles them until ctx ends, then waits for the
// messages being handled and returns nil. Messages pulled but not yet
// handled are not acknowledged and come again after AckWait. It returns
// an error if the consumer cannot be read (it was deleted, say).
func (c *Consumer) Run(ctx context.Context) error {
	it, err := c.cons.Messages(jetstream.PullMaxMessages(c.prefetch), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("idemnats: %w", err)
	}
	stopped := context.AfterFunc(ctx, it.Stop)
	defer stopped()
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	// A message being handled when ctx ends is handled to its end (Run
	// waits for it), not cancelled halfway.
	handling := context.WithoutCancel(ctx)
	for range c.workers {
		wg.Go(func() {
			for m := range msgs {
				_, _ = c.Handle(handling, m)
			}
		})
	}
	defer func() { close(msgs); wg.Wait() }()
	for {
		m, err := it.Next()
		switch {
		case err == nil:
			msgs <- m
		case ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			it.Stop()
			return fmt.Errorf("idemnats: %w", err)
		default: // a missed heartbeat, a reconnect: the iterator goes on
		}
	}
}

// Handle handles one message, for callers that pull messages themselves
// (Fetch, say): it runs the handler once per key and settles m.
func (c *Consumer) Handle(ctx context.Context, m jetstream.Msg) (idemmsg.Outcome, error) {
	d, err := c.delivery(m)
	var out idemmsg.Outcome
	if err != nil {
		// Without metadata the message cannot be keyed: it is no
		// JetStream message, so there is nothing to settle either.
		out = idemmsg.Terminated
	} else {
		out, err = c.inner.Handle(ctx, d, acker{m})
	}
	if c.observe != nil {
		c.observe(d, out, err)
	}
	return out, err
}

// delivery is m as idemmsg sees it.
func (c *Consumer) delivery(m jetstream.Msg) (idemmsg.Delivery, error) {
	md, err := m.Metadata()
	if err != nil {
		return idemmsg.Delivery{}, fmt.Errorf("idemnats: %w", err)
	}
	id := m.Headers().Get(MsgIDHeader)
	if id == "" {
		id = fmt.Sprintf("%s.%d", c.epoch, md.Sequence.Stream)
	}
	return idemmsg.Delivery{ID: id, Body: m.Data(), Header: m.Headers(), Attempt: int(md.NumDelivered)}, nil
}

// acker settles a JetStream message.
type acker struct{ m jetstream.Msg }

func (a acker) Ack(context.Context) error                    { return a.m.Ack() }
func (a acker) Nak(_ context.Context, d time.Duration) error { return a.m.NakWithDelay(d) }

// Term sends a plain +TERM: servers before 2.10 do not parse a reason
// after it and leave the message unacknowledged. The reason reaches
// Options.Observe as the error instead.
func (a acker) Term(context.Context, string) error { return a.m.Term() }
func (a acker) InProgress(context.Context) error   { return a.m.InProgress() }
