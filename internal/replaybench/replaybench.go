// Package replaybench is the cached-replay benchmark loop that the
// observer adapters (idemotel, idemprom) run with and without their
// observer, so that their figures compare with one another.
package replaybench

import (
	"context"
	"testing"

	"github.com/idemkit/idem"
)

// Run opens a store with opts, stores one 256-byte result, and replays it
// with DoAppend into a reused buffer for b.N iterations.
func Run(b *testing.B, opts idem.Options) {
	st, err := idem.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sc, err := st.Scope("payments", idem.ScopeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	fn := func(context.Context) ([]byte, error) { return make([]byte, 256), nil }
	for range 2 { // stored, then replayed once: in the cache
		if _, err := sc.Do(ctx, "order-1001", nil, fn); err != nil {
			b.Fatal(err)
		}
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		res, err := sc.DoAppend(ctx, dst[:0], "order-1001", nil, fn)
		if err != nil || !res.Replayed {
			b.Fatal(err)
		}
		dst = res.Value
	}
}
