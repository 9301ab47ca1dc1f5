package idemgrpc_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/metadata"
)

// BenchmarkInterceptor compares a unary call over an in-memory connection
// without idemgrpc, with it on a first execution (claim, run, store), and
// with it on a replay.
//
//	go test -run '^$' -bench Interceptor ./idemgrpc
func BenchmarkInterceptor(b *testing.B) {
	for _, mode := range []string{"bare", "first", "replay"} {
		b.Run(mode, func(b *testing.B) {
			f := newFixture(b, fixtureOpts{bare: mode == "bare"})
			ctx := metadata.AppendToOutgoingContext(context.Background(), "user", "alice")
			if mode == "replay" {
				ctx = metadata.AppendToOutgoingContext(ctx, "idempotency-key", "hot")
				if _, err := f.cli.UnaryCall(ctx, order("x")); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				call := ctx
				if mode == "first" {
					call = metadata.AppendToOutgoingContext(ctx, "idempotency-key", fmt.Sprint("k", i))
				}
				if _, err := f.cli.UnaryCall(call, order("x")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
