package idemmsg

import (
	"context"
	"time"
)

// Delivery is one delivery of a message, as a broker adapter hands it to
// [Consumer.Handle]. A message delivered again (after a lost ack, an
// expired ack deadline, a crash) is a new Delivery with the same ID and
// body and a higher Attempt.
type Delivery struct {
	// ID is the message's own identity: what the publisher set (JetStream's
	// Nats-Msg-Id, an outbox row's id) or, failing that, the broker's
	// (a stream sequence). It is empty if the broker gives none.
	ID string
	// Body is the message's payload.
	Body []byte
	// Header holds the message's headers, if the broker has them.
	Header map[string][]string
	// Attempt counts this message's deliveries, 1 for the first, as the
	// broker counts them (JetStream's NumDelivered): deliveries that were
	// put back without running the handler (in progress elsewhere, the
	// store down) count too, so MaxAttempts bounds deliveries, not failed
	// runs.
	Attempt int
}

// Acker settles a delivery with the broker; an adapter implements it for
// each delivery. Handle calls exactly one of Ack, Nak and Term per
// delivery, and InProgress any number of times before that.
type Acker interface {
	// Ack tells the broker the message is done: it is not delivered again
	// (unless the ack is lost, and then the redelivery is replayed).
	Ack(ctx context.Context) error
	// Nak asks the broker to deliver the message again after delay.
	Nak(ctx context.Context, delay time.Duration) error
	// Term tells the broker never to deliver the message again, because
	// of reason: the broker's terminal or dead-letter path.
	Term(ctx context.Context, reason string) error
	// InProgress tells the broker the handler is still working, so that
	// it does not deliver the message to another consumer meanwhile.
	InProgress(ctx context.Context) error
}
