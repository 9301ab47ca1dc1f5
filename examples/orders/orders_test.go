package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestOrderMatchesItsRequest loses the idempotency record of a key (a new
// store on the same orders, as a crash before the response was recorded
// leaves them), then retries: with the same request it gets the order the
// key made; with another, 422, never the other request's order. Once the
// key's lifetime has passed, another request makes the order it asks for.
func TestOrderMatchesItsRequest(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	orders, err := openOrders(t.TempDir(), clock.now)
	require.NoError(t, err)
	serve := func() http.Handler {
		st, err := idem.Open(idem.Options{InMemory: true, Now: clock.now})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		sc, err := st.Scope("orders", idem.ScopeOptions{TTL: time.Hour})
		require.NoError(t, err)
		h, err := newHandler(sc, orders, 0, 0, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		return h
	}
	post := func(h http.Handler, body string) (int, order) {
		r := httptest.NewRequest("POST", "/orders", bytes.NewBufferString(body))
		r.Header.Set("Authorization", "Bearer alice")
		r.Header.Set("Idempotency-Key", `"k"`)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var o order
		if w.Code == http.StatusCreated {
			b, _ := io.ReadAll(w.Body)
			require.NoError(t, json.Unmarshal(b, &o))
		}
		return w.Code, o
	}
	tea, cake := `{"item":"tea","qty":2}`, `{"item":"cake","qty":1}`

	code, first := post(serve(), tea)
	require.Equal(t, http.StatusCreated, code)
	restarted := serve() // the record is lost: only the order tells
	code, _ = post(restarted, cake)
	assert.Equal(t, http.StatusUnprocessableEntity, code)
	code, again := post(restarted, tea)
	assert.Equal(t, http.StatusCreated, code, "the 422 was not stored: the key is still the first request's")
	assert.Equal(t, first, again, "the same request gets the key's order")

	clock.add(time.Hour)
	code, next := post(serve(), cake)
	require.Equal(t, http.StatusCreated, code, "after the key's lifetime it is new again")
	assert.Equal(t, "cake", next.Item)
	assert.NotEqual(t, first.ID, next.ID)
	list, err := orders.list("alice")
	require.NoError(t, err)
	assert.Equal(t, []order{first, next}, list)
}

func TestUnknownCallerIsAProblem(t *testing.T) {
	st, err := idem.Open(idem.Options{InMemory: true})
	require.NoError(t, err)
	defer st.Close()
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	orders, err := openOrders(t.TempDir(), time.Now)
	require.NoError(t, err)
	h, err := newHandler(sc, orders, 0, 0, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/orders", bytes.NewBufferString(`{"item":"tea","qty":1}`)))
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	assert.Contains(t, w.Body.String(), `"status":401`)
}

func TestHelpIsNotAnError(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-h"}, &out)
	assert.ErrorIs(t, err, flag.ErrHelp, "main exits 0 for it")
}
