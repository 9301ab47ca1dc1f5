// Command orders is a small POST service that shows idem end to end: a
// client may retry POST /orders as often as it likes, send it twice at
// once, or have the server killed under it, and it never gets two orders
// for one idempotency key.
//
//	go run ./examples/orders -addr 127.0.0.1:8080 -dir ./data [-ttl 24h] [-delay 0] [-wait 0] [-admin ADDR] [-redis ADDR]
//
// With -redis, the idempotency records live in that Redis server instead
// of the directory, so several instances (sharing -redis and -dir) can
// serve the same clients: a retry that reaches another instance is
// replayed there too.
//
//	curl -i -X POST localhost:8080/orders -H 'Authorization: Bearer alice' \
//	     -H 'Idempotency-Key: "order-1"' -d '{"item":"tea","qty":2}'
//	curl localhost:8080/orders -H 'Authorization: Bearer alice'
//
// # Why no order is ever created twice
//
// The idempotency record makes a retry replay the first response. One
// window is left that the record cannot cover: a crash after the order
// was written and before the response was recorded. The retry then runs
// the handler again (the scope's default OrphanRerun), so the orders are
// kept by (caller, idempotency key), each with the request that made it
// (see orderStore): the handler finds the order that key made within the
// key's lifetime and answers with it, or with 422 if another request made
// it, instead of creating another. Once the key's lifetime (-ttl) has
// passed, the key is new again and makes a new order.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idempg"
	"github.com/idemkit/idem/idemprom"
	"github.com/idemkit/idem/idemredis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, logOut io.Writer) error {
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	dir := fs.String("dir", "./data", "data `directory`: orders in DIR/orders, the idempotency store in DIR/idem (idem dump -dir DIR/idem)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long an idempotency key is remembered")
	delay := fs.Duration("delay", 0, "simulated slow payment call, after the order is written")
	wait := fs.Duration("wait", 0, "how long a duplicate waits for the first request (0: 409 at once)")
	admin := fs.String("admin", "", "address for the store's read-only admin endpoint (for idem -url) and its Prometheus /metrics")
	redisAddr := fs.String("redis", "", "keep the idempotency records in this Redis server, shared by instances")
	pgURL := fs.String("postgres", "", "keep the records and the orders in this PostgreSQL database (postgres://…), in one transaction per order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))

	metrics := idemprom.New() // served at -admin's /metrics
	opts := idem.Options{Dir: filepath.Join(*dir, "idem"), Logger: log, Observer: metrics}
	if *redisAddr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
		defer rdb.Close()
		be, err := idemredis.New(rdb, idemredis.Options{Prefix: "orders:"})
		if err != nil {
			return err
		}
		opts.Dir, opts.Backend = "", be
	}
	var orders orderBook
	if *pgURL != "" {
		pool, err := pgxpool.New(ctx, *pgURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		be, err := idempg.New(pool, idempg.Options{Table: "orders_idem"})
		if err != nil {
			return err
		}
		if err := be.Migrate(ctx); err != nil {
			return err
		}
		if orders, err = openPGOrders(ctx, pool, "orders"); err != nil {
			return err
		}
		// A crash leaves nothing of an order's work (it commits with its
		// record), so an orphan is run again after a short lease.
		opts.Dir, opts.Backend, opts.Lease = "", be, 3*time.Second
	} else {
		files, err := openOrders(filepath.Join(*dir, "orders"), time.Now)
		if err != nil {
			return err
		}
		orders = files
	}
	st, err := idem.Open(opts)
	if err != nil {
		return err
	}
	defer st.Close()
	scope, err := st.Scope("orders", idem.ScopeOptions{TTL: *ttl})
	if err != nil {
		return err
	}
	handler, err := newHandler(scope, orders, *delay, *wait, log)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("orders: listening", "addr", ln.Addr().String())
	if *admin != "" {
		aln, err := net.Listen("tcp", *admin)
		if err != nil {
			return err
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics)
		asrv := &http.Server{Handler: st.AdminHandler(idem.AdminOptions{Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, asrv)
		go func() { errc <- asrv.Serve(aln) }()
		log.Info("orders: admin endpoint", "addr", aln.Addr().String())
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}
