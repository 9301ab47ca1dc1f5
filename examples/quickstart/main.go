// Command quickstart shows idem's main job in a few lines: a payment that
// is retried, one sent 50 times at once, and a key reused with another
// payload: each payment is charged exactly once.
//
//	go run ./examples/quickstart [-dir DIR]
//
// Run it twice with the same -dir to see the result survive a restart.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idem"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	flags := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	dir := flags.String("dir", "", "store directory (default: a new temporary one)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "idem-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}

	st, err := idem.Open(idem.Options{Dir: *dir})
	if err != nil {
		return err
	}
	defer st.Close()
	payments, err := st.Scope("payments", idem.ScopeOptions{TTL: 24 * time.Hour})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "store %s, epoch %d\n", *dir, st.Epoch())

	var charges atomic.Int32
	body := []byte(`{"amount": 4200, "currency": "EUR"}`)
	fingerprint := sha256.Sum256(body)
	pay := func(key string) (idem.Result, error) {
		return payments.Tenant("acct_42").Do(ctx, key, fingerprint[:], func(context.Context) ([]byte, error) {
			n := charges.Add(1)
			time.Sleep(50 * time.Millisecond) // the card network
			return fmt.Appendf(nil, `{"charge": "ch_%d", "amount": 4200}`, n), nil
		})
	}

	for attempt := 1; attempt <= 3; attempt++ {
		res, err := pay("order-1001")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "retry %d:          %s replayed=%v\n", attempt, res.Value, res.Replayed)
	}

	var wg sync.WaitGroup
	var replayed atomic.Int32
	for range 50 {
		wg.Go(func() {
			if res, err := pay("order-1002"); err == nil && res.Replayed {
				replayed.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(out, "50 at once:       %d ran, %d got the result of that run\n", 50-replayed.Load(), replayed.Load())

	other := sha256.Sum256([]byte(`{"amount": 1, "currency": "EUR"}`))
	_, err = payments.Tenant("acct_42").Do(ctx, "order-1001", other[:], func(context.Context) ([]byte, error) {
		return nil, errors.New("must not run")
	})
	fmt.Fprintf(out, "other payload:    %v\n", err)

	s := st.Stats()
	fmt.Fprintf(out, "charges:          %d in this run for 2 payments (order-1001, order-1002)\n", charges.Load())
	fmt.Fprintf(out, "stats:            %d claims, %d replays, %d coalesced waits\n", s.Claims, s.Replays, s.Coalesced)
	return nil
}
