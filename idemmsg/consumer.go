// Package idemmsg runs a message's effect once per key, whatever the broker
// redelivers: after a lost ack, an expired ack deadline, a consumer killed
// mid-message, or a publisher that sent the message twice.
//
// A [Consumer] wraps a handler. For each delivery it claims the message's
// key in an idem scope, runs the handler only if the key is new, stores
// its outcome, and only then settles the delivery with the broker:
//
//   - The handler ran and its result is stored: Ack.
//   - A redelivery of a message whose result is stored: Ack, without
//     running the handler.
//   - The message is being handled right now (another delivery of it, on
//     this consumer or another): Nak with Options.InProgressDelay — never
//     a second run, never an Ack before the outcome is stored.
//   - The handler failed with an error marked [idem.Permanent]: the
//     failure is stored and the message goes to the broker's terminal
//     path (Term); so does every redelivery of it.
//   - Any other failure, or a panic: the key is released and the message
//     is Nak'ed with a growing delay, until Options.MaxAttempts deliveries,
//     and then Term'ed: a poison message never loops forever.
//   - The outcome could not be stored after the handler ran: Nak, and the
//     key's record says the work may have happened (under
//     [idem.OrphanReport] a redelivery is Term'ed as outcome unknown).
//
// Each message is its own key, so in a batch a crash reruns only the
// messages whose outcomes were not stored. Broker adapters (package
// idemnats for NATS JetStream) turn their messages into a [Delivery] and
// an [Acker].
package idemmsg

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/idemkit/idem"
)

// Handler is a message's effect. Its result is stored as the message's
// outcome (it may be nil). Mark an error that no redelivery can fix with
// [idem.Permanent].
type Handler func(ctx context.Context, d Delivery) ([]byte, error)

// Options configures a [Consumer]. The zero value keys messages by ID.
type Options struct {
	// Key derives a delivery's idempotency key. Nil means [ByID].
	Key KeyFunc
	// Tenant, if set, names the key space of a delivery inside the scope
	// (a customer, a source system), as [idem.Scope.Tenant] does.
	Tenant func(Delivery) (string, error)
	// Fingerprint identifies the content a key was first seen with; a
	// delivery with the same key and another fingerprint is Term'ed
	// (the key was reused for another message) and never runs. Nil means
	// the SHA-256 of the body; return nil to skip the check.
	Fingerprint func(Delivery) []byte

	// InProgressDelay is the Nak delay for a delivery of a message that is
	// being handled elsewhere. Zero means 1 s.
	InProgressDelay time.Duration
	// RetryDelay is the Nak delay after a failure, by attempt (1 for the
	// first delivery). Nil means 500 ms doubled per attempt, at most 30 s.
	RetryDelay func(attempt int) time.Duration
	// MaxAttempts is how many deliveries a failing message gets before it
	// is Term'ed. Zero means 5; negative, no limit.
	MaxAttempts int
	// Context, if set, gives the handling of each delivery — claim,
	// handler, stored outcome — a context of its own, and returns the
	// function to call once it has ended. idempg.TxContext is one: the
	// handler's transaction (idempg.Begin) then commits the outcome too.
	Context func(ctx context.Context) (context.Context, func())

	// Heartbeat is how often the broker is told that a running handler is
	// still working (Acker.InProgress), so that a long handler does not
	// outlive the broker's ack deadline. Zero sends none; adapters set it
	// from the deadline.
	Heartbeat time.Duration
}

// Defaults of Options.
const (
	DefaultInProgressDelay = time.Second
	DefaultMaxAttempts     = 5
)

// Consumer runs a handler once per message key. It is safe for concurrent
// use: deliveries may be handled from many goroutines.
type Consumer struct {
	scope   *idem.Scope
	handler Handler
	opts    Options
}

// New returns a consumer of scope that runs handler.
func New(scope *idem.Scope, handler Handler, opts Options) (*Consumer, error) {
	switch {
	case scope == nil:
		return nil, errors.New("idemmsg: New needs a scope")
	case handler == nil:
		return nil, errors.New("idemmsg: New needs a handler")
	case opts.InProgressDelay < 0 || opts.Heartbeat < 0:
		return nil, errors.New("idemmsg: InProgressDelay and Heartbeat must not be negative")
	}
	if opts.Key == nil {
		opts.Key = ByID
	}
	if opts.Fingerprint == nil {
		opts.Fingerprint = bodyFingerprint
	}
	if opts.InProgressDelay == 0 {
		opts.InProgressDelay = DefaultInProgressDelay
	}
	if opts.RetryDelay == nil {
		opts.RetryDelay = defaultRetryDelay
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	return &Consumer{scope: scope, handler: handler, opts: opts}, nil
}

// Outcome is how Handle settled a delivery.
type Outcome int

const (
	// Acked: the handler ran and its outcome is stored.
	Acked Outcome = iota + 1
	// Replayed: the message's outcome was already stored; acknowledged
	// without running the handler.
	Replayed
	// Deferred: Nak'ed, to be delivered again — the message is being
	// handled elsewhere, the handler failed, or the store did.
	Deferred
	// Terminated: Term'ed — a permanent failure, a poison message past
	// MaxAttempts, a key reused for other content, an outcome unknown.
	Terminated
)

func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Replayed:
		return "replayed"
	case Deferred:
		return "deferred"
	case Terminated:
		return "terminated"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Handle handles one delivery and settles it with a: see the package
// documentation for which answer each case gets. It returns the outcome
// and, for every case but a plain Ack or replay, the error behind it
// (the handler's, the store's, or the broker's when settling failed).
func (c *Consumer) Handle(ctx context.Context, d Delivery, a Acker) (Outcome, error) {
	if ctx == nil {
		return 0, errors.New("idemmsg: Handle called with a nil context")
	}
	if c.opts.Context != nil {
		var end func()
		ctx, end = c.opts.Context(ctx)
		defer end()
	}
	settle := context.WithoutCancel(ctx)
	key, err := c.opts.Key(d)
	if err != nil {
		return c.term(settle, a, fmt.Errorf("idemmsg: no key: %w", err))
	}
	scope := c.scope
	if c.opts.Tenant != nil {
		tenant, err := c.opts.Tenant(d)
		if err != nil {
			return c.term(settle, a, fmt.Errorf("idemmsg: no tenant: %w", err))
		}
		scope = scope.Tenant(tenant)
	}
	cl, err := scope.Claim(ctx, key, c.opts.Fingerprint(d))
	switch {
	case errors.Is(err, idem.ErrInProgress):
		return c.nak(settle, a, c.opts.InProgressDelay, err)
	case errors.Is(err, idem.ErrFingerprintMismatch), errors.Is(err, idem.ErrOutcomeUnknown),
		errors.Is(err, idem.ErrInvalidKey), errors.Is(err, idem.ErrInvalidScope):
		return c.term(settle, a, err)
	case err != nil: // the store failed or refused (full): it may recover
		return c.nak(settle, a, c.opts.RetryDelay(d.Attempt), err)
	case !cl.Owned():
		return c.settleStored(settle, a, cl)
	}
	var handlerErr error
	stop := c.heartbeat(ctx, a)
	_, err = cl.Run(ctx, func(ctx context.Context) ([]byte, error) {
		value, err := c.run(ctx, d)
		handlerErr = err
		return value, err
	})
	stop()
	switch {
	case err == nil:
		return Acked, a.Ack(settle)
	case handlerErr == nil, err != handlerErr && errors.Is(handlerErr, idem.ErrPermanent):
		// The work ran (or failed for good) but its outcome was not
		// stored: not the message's fault, so it does not count towards
		// MaxAttempts.
		return c.nak(settle, a, c.opts.RetryDelay(d.Attempt), err)
	case errors.Is(handlerErr, idem.ErrPermanent):
		return c.term(settle, a, err)
	case ctx.Err() != nil:
		// Stopped from outside (a shutdown): not the message's fault.
		return c.nak(settle, a, c.opts.RetryDelay(d.Attempt), err)
	case c.opts.MaxAttempts > 0 && d.Attempt >= c.opts.MaxAttempts:
		return c.term(settle, a, fmt.Errorf("idemmsg: gave up after %d deliveries: %w", d.Attempt, err))
	default:
		return c.nak(settle, a, c.opts.RetryDelay(d.Attempt), err)
	}
}

// run calls the handler, turning a panic into an error: the key is
// released and the message retried, up to MaxAttempts, instead of the
// consumer's process dying on every redelivery of a poison message.
func (c *Consumer) run(ctx context.Context, d Delivery) (value []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("idemmsg: handler panicked: %v", p)
		}
	}()
	return c.handler(ctx, d)
}

// settleStored answers a delivery whose key has a stored outcome.
func (c *Consumer) settleStored(ctx context.Context, a Acker, cl *idem.Claim) (Outcome, error) {
	_, err := cl.Result()
	if err == nil || errors.Is(err, idem.ErrValueTooLarge) { // the work is done; its result was too large to keep
		return Replayed, a.Ack(ctx)
	}
	return c.term(ctx, a, err) // a stored permanent failure, again
}

// heartbeat tells the broker every Heartbeat that the handler still
// works, until the returned function is called.
func (c *Consumer) heartbeat(ctx context.Context, a Acker) (stop func()) {
	if c.opts.Heartbeat == 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(c.opts.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = a.InProgress(ctx)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (c *Consumer) term(ctx context.Context, a Acker, cause error) (Outcome, error) {
	if err := a.Term(ctx, cause.Error()); err != nil {
		return Terminated, errors.Join(cause, err)
	}
	return Terminated, cause
}

func (c *Consumer) nak(ctx context.Context, a Acker, delay time.Duration, cause error) (Outcome, error) {
	if err := a.Nak(ctx, delay); err != nil {
		return Deferred, errors.Join(cause, err)
	}
	return Deferred, cause
}

// bodyFingerprint is the default Options.Fingerprint.
func bodyFingerprint(d Delivery) []byte {
	sum := sha256.Sum256(d.Body)
	return sum[:]
}

// defaultRetryDelay is the default Options.RetryDelay: 500 ms doubled per
// attempt, at most 30 s.
func defaultRetryDelay(attempt int) time.Duration {
	const first, most = 500 * time.Millisecond, 30 * time.Second
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 7 {
		return most
	}
	return min(first<<(attempt-1), most)
}
