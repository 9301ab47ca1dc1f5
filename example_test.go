package idem_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/idemkit/idem"
)

// A retried request runs once; the retry gets the first result back.
func ExampleScope_Do() {
	st, err := idem.Open(idem.Options{InMemory: true}) // use Dir in production
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	payments, err := st.Scope("payments", idem.ScopeOptions{})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	charges := 0
	charge := func(context.Context) ([]byte, error) {
		charges++
		return []byte(fmt.Sprintf("charge #%d", charges)), nil
	}
	for attempt := 1; attempt <= 3; attempt++ {
		res, err := payments.Tenant("acct_42").Do(ctx, "order-1001", []byte("sha256-of-body"), charge)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("attempt %d: %s (replayed: %v)\n", attempt, res.Value, res.Replayed)
	}

	_, err = payments.Tenant("acct_42").Do(ctx, "order-1001", []byte("another body"), charge)
	fmt.Println(errors.Is(err, idem.ErrFingerprintMismatch))
	// Output:
	// attempt 1: charge #1 (replayed: false)
	// attempt 2: charge #1 (replayed: true)
	// attempt 3: charge #1 (replayed: true)
	// true
}

// Claim is the same check-and-set for work that does not fit in a function.
func ExampleScope_Claim() {
	st, err := idem.Open(idem.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	webhooks, err := st.Scope("webhooks", idem.ScopeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	handle := func(eventID string) (string, error) {
		claim, err := webhooks.Claim(ctx, eventID, nil)
		if err != nil {
			return "", err // ErrInProgress, ErrFingerprintMismatch, ...
		}
		if !claim.Owned() {
			res, err := claim.Result()
			return "already handled: " + string(res.Value), err
		}
		defer claim.Release(ctx) // gives the key back unless completed
		// ... the side effect ...
		return "handled", claim.Complete(ctx, []byte("ok"))
	}
	for range 2 {
		msg, err := handle("evt_1")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(msg)
	}
	// Output:
	// handled
	// already handled: ok
}

// A failure marked Permanent is stored and replayed; other errors let a
// retry run again.
func ExamplePermanent() {
	st, err := idem.Open(idem.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	payments, _ := st.Scope("payments", idem.ScopeOptions{})
	ctx := context.Background()

	decline := func(context.Context) ([]byte, error) {
		return nil, idem.Permanent(errors.New("card declined"))
	}
	_, err = payments.Do(ctx, "order-7", nil, decline)
	fmt.Println("first:", err)
	_, err = payments.Do(ctx, "order-7", nil, decline)
	var failure *idem.FailureError
	fmt.Println("retry:", err, errors.As(err, &failure))
	// Output:
	// first: card declined
	// retry: card declined true
}

// Expired records are deleted by a background collector, or now with GC.
func ExampleStore_GC() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := idem.Open(idem.Options{InMemory: true, Now: func() time.Time { return now }})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	hooks, _ := st.Scope("webhooks", idem.ScopeOptions{TTL: time.Hour})
	for _, id := range []string{"evt_1", "evt_2", "evt_3"} {
		_, _ = hooks.Do(context.Background(), id, nil, func(context.Context) ([]byte, error) { return []byte("ok"), nil })
	}
	fmt.Println("keys:", st.Stats().Scopes["webhooks"].Keys)

	now = now.Add(time.Hour) // every record has expired
	gc, err := st.GC(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("deleted %d, live %d, keys: %d\n", gc.Deleted, gc.Live, st.Stats().Scopes["webhooks"].Keys)
	// Output:
	// keys: 3
	// deleted 3, live 0, keys: 0
}
