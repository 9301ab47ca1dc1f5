// Command client places orders with the orders service over a flaky
// connection, through idemhttp.Transport, and then checks with the
// service that each order was created once.
//
//	go run ./examples/orders -dir ./data &
//	go run ./examples/orders/client -n 20 -lose 0.4
//
// -lose is the share of answers lost on the way back, after the service
// has acted: the client sees a dropped connection, as after a timeout, and
// cannot know whether its order was made. The Transport sent the request
// with one Idempotency-Key and retries it with the same key, so the
// service replays the first answer instead of creating a second order.
// With -new-key-per-attempt the client retries as a naive client does,
// with a new key each time, and the check finds the duplicates.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/idemkit/idem/idemhttp"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the orders service")
	user := fs.String("user", "alice", "the caller (its Bearer token)")
	n := fs.Int("n", 10, "how many orders")
	lose := fs.Float64("lose", 0.3, "the share of answers lost after the service acted, 0 to 1")
	naive := fs.Bool("new-key-per-attempt", false, "retry with a new key each time, as a naive client does (makes duplicates)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *lose < 0 || *lose >= 1 {
		return errors.New("-n must be at least 1 and -lose in [0, 1)")
	}
	flaky := &lossy{base: http.DefaultTransport, share: *lose}
	send := func(item string) (*http.Response, int, error) {
		attempts := 0
		tr := &idemhttp.Transport{Base: flaky, MaxAttempts: 20, BaseDelay: 20 * time.Millisecond,
			OnRetry: func(int, *http.Response, error, time.Duration) { attempts++ }}
		if *naive {
			tr.Base = newKeyEachTime{flaky}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, *base+"/orders", strings.NewReader(fmt.Sprintf(`{"item":%q,"qty":1}`, item)))
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+*user)
		req.Header.Set("Content-Type", "application/json")
		resp, err := idemhttp.NewClient(tr).Do(req)
		return resp, attempts + 1, err
	}

	batch := fmt.Sprintf("%06x", rand.Uint32()&0xffffff) // items of this run only
	items := make([]string, *n)
	for i := range items {
		items[i] = fmt.Sprintf("tea-%s-%d", batch, i+1)
		resp, attempts, err := send(items[i])
		if err != nil {
			return fmt.Errorf("order %s: %w", items[i], err)
		}
		var o struct{ ID string }
		_ = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		how := "created"
		if idemhttp.Replayed(resp) {
			how = "replayed (the first answer was lost)"
		}
		fmt.Fprintf(out, "%-16s %d attempt(s)  %d %s  %s\n", items[i], attempts, resp.StatusCode, o.ID, how)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *base+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+*user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var orders []struct{ Item string }
	if err := json.NewDecoder(resp.Body).Decode(&orders); err != nil {
		return fmt.Errorf("GET /orders: %w", err)
	}
	made := map[string]int{}
	for _, o := range orders {
		made[o.Item]++
	}
	twice := 0
	for _, item := range items {
		if made[item] != 1 {
			twice++
			fmt.Fprintf(out, "%s: %d orders\n", item, made[item])
		}
	}
	fmt.Fprintf(out, "lost answers: %d; orders the service holds for these %d requests: ", flaky.lost, *n)
	if twice > 0 {
		fmt.Fprintf(out, "%d requests made more than one order\n", twice)
		return fmt.Errorf("%d duplicate orders", twice)
	}
	fmt.Fprintln(out, "one each")
	return nil
}

// lossy loses a share of the answers after the service has answered: the
// caller gets an error, as when a connection drops or a timeout fires
// before the answer arrives.
type lossy struct {
	base  http.RoundTripper
	share float64
	lost  int
}

func (l *lossy) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	if err != nil || rand.Float64() >= l.share {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.lost++
	return nil, errors.New("connection lost before the answer arrived")
}

// newKeyEachTime replaces the key on every attempt: the naive retry.
type newKeyEachTime struct{ base http.RoundTripper }

func (n newKeyEachTime) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Idempotency-Key", fmt.Sprintf(`"naive-%d"`, rand.Int64()))
	return n.base.RoundTrip(req)
}
