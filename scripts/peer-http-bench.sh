#!/usr/bin/env bash
# Compares idemhttp's overhead per request with peer middlewares', in one
# run on this machine: each suite's bare handler, first execution and
# replay (idemhttp's with its store on disk and in memory), interleaved
# ROUNDS times. The peers are built beside the
# repository, in a temporary directory; none of their code comes in.
#
#   - repenguin22/idemlease's httpidem (in-memory store), with its own benchmarks;
#   - fco-gt/gopotency's net/http middleware (in-memory store), with a
#     benchmark this script writes beside it that sends what idemhttp's sends.
#
#   scripts/peer-http-bench.sh
#   IDEMLEASE_SRC=/path/to/clone GOPOTENCY_SRC=/path/to/clone ROUNDS=5 scripts/peer-http-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

git clone -q "${IDEMLEASE_SRC:-https://github.com/repenguin22/idemlease}" "$tmp/idemlease"
git clone -q "${GOPOTENCY_SRC:-https://github.com/fco-gt/gopotency}" "$tmp/gopotency"
echo "peers: idemlease $(git -C "$tmp/idemlease" rev-parse --short HEAD), gopotency $(git -C "$tmp/gopotency" rev-parse --short HEAD)"

mkdir "$tmp/gopotency/idembench"
cat > "$tmp/gopotency/idembench/bench_test.go" <<'GO'
package idembench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	idempotency "github.com/fco-gt/gopotency"
	httpmw "github.com/fco-gt/gopotency/middleware/http"
	"github.com/fco-gt/gopotency/storage/memory"
)

// BenchmarkMiddleware is idemhttp's BenchmarkMiddleware, on gopotency.
func BenchmarkMiddleware(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"ord_1","item":"tea","qty":2}`))
	})
	manager, err := idempotency.NewManager(idempotency.Config{Storage: memory.NewMemoryStorage(), TTL: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	wrapped := httpmw.Idempotency(manager)(handler)
	body := `{"item":"tea","qty":2}`
	serve := func(b *testing.B, h http.Handler, key func(i int) string) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := httptest.NewRequest("POST", "/orders", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Idempotency-Key", key(i))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusCreated {
				b.Fatal(w.Code, w.Body)
			}
			i++
		}
	}
	b.Run("bare", func(b *testing.B) { serve(b, handler, func(int) string { return "k" }) })
	b.Run("first", func(b *testing.B) { serve(b, wrapped, func(i int) string { return fmt.Sprint("new-", b.N, "-", i) }) })
	b.Run("replay", func(b *testing.B) { serve(b, wrapped, func(int) string { return "same" }) })
}
GO

go test -c -o "$tmp/idem.test" ./idemhttp
(cd "$tmp/idemlease" && go test -c -o "$tmp/idemlease.test" ./httpidem)
(cd "$tmp/gopotency" && go test -c -o "$tmp/gopotency.test" ./idembench)
for r in $(seq "$rounds"); do
  "$tmp/idem.test" -test.run '^$' -test.bench 'Middleware' -test.benchmem | grep '^Benchmark' | sed 's/^/idemhttp   /'
  "$tmp/idemlease.test" -test.run '^$' -test.bench 'HandlerBaseline|FirstExecution|Replay$' -test.benchmem | grep '^Benchmark' | sed 's/^/idemlease  /'
  "$tmp/gopotency.test" -test.run '^$' -test.bench 'Middleware' -test.benchmem | grep '^Benchmark' | sed 's/^/gopotency  /'
done
