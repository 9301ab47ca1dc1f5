package idemhttp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemkit/idem"
)

// BenchmarkMiddleware compares a bare handler with the same handler behind
// the middleware, on a first execution (a new key each time) and on a
// replay (the same key), with the store on disk and in memory (the
// latter beside in-memory stores of other middlewares):
//
//	go test -run '^$' -bench Middleware ./idemhttp
func BenchmarkMiddleware(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"ord_1","item":"tea","qty":2}`))
	})
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
	for _, store := range []string{"disk", "memory"} {
		opts := idem.Options{Dir: b.TempDir()}
		if store == "memory" {
			opts = idem.Options{InMemory: true}
		}
		st, err := idem.Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		sc, _ := st.Scope("bench", idem.ScopeOptions{})
		mw, _ := New(sc, Options{Global: true})
		wrapped := mw(handler)
		b.Run("store="+store+"/first", func(b *testing.B) {
			serve(b, wrapped, func(i int) string { return fmt.Sprint("new-", b.N, "-", i) })
		})
		b.Run("store="+store+"/replay", func(b *testing.B) { serve(b, wrapped, func(int) string { return "same" }) })
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
