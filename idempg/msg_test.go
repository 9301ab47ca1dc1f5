package idempg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemmsg"
	"github.com/idemkit/idem/idempg"
)

// settled records how Handle settled a delivery.
type settled struct{ acks, naks, terms int }

func (s *settled) Ack(context.Context) error                { s.acks++; return nil }
func (s *settled) Nak(context.Context, time.Duration) error { s.naks++; return nil }
func (s *settled) Term(context.Context, string) error       { s.terms++; return nil }
func (s *settled) InProgress(context.Context) error         { return nil }

// TestMessageOutcomeCommitsWithTheHandlersTransaction: with TxContext, a
// message handler's rows and the message's stored outcome commit in one
// transaction — a failed or panicking handler leaves neither, and a
// redelivery of a handled message adds no row.
func TestMessageOutcomeCommitsWithTheHandlersTransaction(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, idem.ScopeOptions{})
	var fail error
	var panics bool
	c, err := idemmsg.New(s.sc, func(ctx context.Context, d idemmsg.Delivery) ([]byte, error) {
		tx, err := idempg.Begin(ctx, s.pool)
		if err != nil {
			return nil, err
		}
		if _, err := s.order(d.ID)(ctx, tx); err != nil {
			return nil, err
		}
		if panics {
			panic("handler bug")
		}
		return []byte("charged"), fail
	}, idemmsg.Options{Context: idempg.TxContext})
	require.NoError(t, err)
	deliver := func(attempt int) (*settled, idemmsg.Outcome) {
		a := &settled{}
		out, _ := c.Handle(ctx, idemmsg.Delivery{ID: "m1", Body: []byte("pay 5"), Attempt: attempt}, a)
		return a, out
	}

	fail = errors.New("card network timed out")
	a, out := deliver(1)
	assert.Equal(t, idemmsg.Deferred, out)
	assert.Equal(t, 1, a.naks)
	assert.Zero(t, s.rows(t, "m1"), "a failed handler's row is rolled back")

	fail, panics = nil, true
	_, out = deliver(2)
	assert.Equal(t, idemmsg.Deferred, out)
	assert.Zero(t, s.rows(t, "m1"), "so is a panicking one's")

	panics = false
	a, out = deliver(3)
	assert.Equal(t, idemmsg.Acked, out)
	assert.Equal(t, 1, a.acks)
	assert.Equal(t, 1, s.rows(t, "m1"))
	info, err := s.st.Lookup(ctx, "orders", "", "m1")
	require.NoError(t, err)
	assert.Equal(t, idem.StateCompleted, info.State, "the outcome committed with the row")

	a, out = deliver(4)
	assert.Equal(t, idemmsg.Replayed, out)
	assert.Equal(t, 1, a.acks)
	assert.Equal(t, 1, s.rows(t, "m1"), "the redelivery added no row")
}
