package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/idemkit/idem/idemmsg"
)

// payment is a message's body: charge AmountCents to Card.
type payment struct {
	ID          string `json:"id"`
	Card        string `json:"card"`
	AmountCents int64  `json:"amount_cents"`
}

func (p payment) String() string {
	return fmt.Sprintf("%s %d.%02d to card %s", p.ID, p.AmountCents/100, p.AmountCents%100, p.Card)
}

// paymentKey keys a message by its payment id: two messages for one
// payment (a publisher that sent it again under a new message id) are one
// key, and charge once.
func paymentKey(d idemmsg.Delivery) (string, error) {
	p, err := decodePayment(d.Body)
	return p.ID, err
}

func decodePayment(body []byte) (payment, error) {
	var p payment
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("not a payment: %w", err)
	}
	if p.ID == "" || p.Card == "" || p.AmountCents <= 0 {
		return p, errors.New("not a payment: it needs an id, a card and a positive amount_cents")
	}
	return p, nil
}

// broker is the flags and connection every command shares.
type broker struct {
	url    *string
	stream *string
	nc     *nats.Conn
	js     jetstream.JetStream
}

func brokerFlags(fs *flag.FlagSet) *broker {
	return &broker{
		url:    fs.String("nats", nats.DefaultURL, "NATS server `URL` (with JetStream)"),
		stream: fs.String("stream", "PAYMENTS", "JetStream stream `name`; its subject is the same name"),
	}
}

func (b *broker) connect() error {
	nc, err := nats.Connect(*b.url, nats.Name("idem example consumer"))
	if err != nil {
		return fmt.Errorf("nats at %s: %w", *b.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	b.nc, b.js = nc, js
	return nil
}

func (b *broker) close() {
	if b.nc != nil {
		b.nc.Close()
	}
}

// subject is where payments are published.
func (b *broker) subject() string { return *b.stream }

// ensureStream creates the stream if it is missing. Its Duplicates window
// (JetStream's own publish-side deduplication by Nats-Msg-Id) is the
// default two minutes.
func (b *broker) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	s, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     *b.stream,
		Subjects: []string{b.subject()},
		Storage:  jetstream.FileStorage,
		MaxAge:   7 * 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", *b.stream, err)
	}
	return s, nil
}
