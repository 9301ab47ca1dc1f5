package idemredis_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemredis"
)

// Every instance of a service opens its store on the same Redis; a retry
// that reaches any of them gets the first execution's result.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: "orders:"})
	if err != nil {
		log.Fatal(err)
	}
	st, err := idem.Open(idem.Options{Backend: be})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	payments, err := st.Scope("payments", idem.ScopeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	res, err := payments.Tenant("acct_42").Do(context.Background(), "order-1001", nil,
		func(ctx context.Context) ([]byte, error) {
			return []byte("charged"), nil // runs once across all instances
		})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(res.Value), res.Replayed)
}
