package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemhttp"
	"github.com/idemkit/idem/idempg"
)

// orderBook is where orders are kept: files (orderStore) or Postgres
// (pgOrders).
type orderBook interface {
	// create makes the order that item and qty ask for under (user, key)
	// in r's work (see orderStore.createOnce and pgOrders.create).
	create(r *http.Request, user, key, item string, qty int, ttl time.Duration) (order, error)
	list(user string) ([]order, error)
}

// newHandler routes POST /orders (idempotent) and GET /orders. With a
// transactional order book (Postgres), the response is held until its
// record has committed with the order.
func newHandler(scope *idem.Scope, orders orderBook, delay, wait time.Duration, log *slog.Logger) (http.Handler, error) {
	_, transactional := orders.(*pgOrders)
	idempotent, err := idemhttp.New(scope, idemhttp.Options{
		Buffer: transactional,
		Tenant: func(r *http.Request) (string, error) { return user(r) },
		Wait:   wait,
		Logger: log,
		// A 422 says the key's order was made by another request (see
		// createOrder): it is not stored, so that the key stays that
		// request's, and its own retry still gets its order.
		Persist: func(status int) bool {
			return status != http.StatusUnprocessableEntity && idemhttp.DefaultPersist(status)
		},
	})
	if err != nil {
		return nil, err
	}
	ttl := scope.Options().TTL
	mux := http.NewServeMux()
	var create http.Handler = idempotent(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		createOrder(w, r, orders, ttl, delay)
	}))
	if transactional {
		create = idempg.Handler(create)
	}
	mux.Handle("POST /orders", requireUser(create))
	mux.Handle("GET /orders", requireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := user(r)
		list, err := orders.list(u)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, list)
	})))
	return mux, nil
}

// user is the caller: in this demo the bearer token is the user id.
func user(r *http.Request) (string, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" || len(token) > 64 {
		return "", errors.New("missing or malformed bearer token")
	}
	return token, nil
}

// requireUser answers 401 before anything else runs for an unknown caller.
func requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := user(r); err != nil {
			// application/problem+json, like every refusal of the
			// idempotency middleware.
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"type":   idemhttp.DefaultProblemBase + idemhttp.ProblemTenantUnknown,
				"title":  "The caller could not be identified",
				"status": http.StatusUnauthorized,
				"detail": err.Error(),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type orderRequest struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

func createOrder(w http.ResponseWriter, r *http.Request, orders orderBook, ttl, delay time.Duration) {
	u, _ := user(r)
	key, err := idemhttp.ParseKey(r.Header.Get("Idempotency-Key")) // the middleware has checked it
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req orderRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Item == "" || req.Qty < 1 || len(req.Item) > 200 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `want {"item": non-empty string, "qty": positive int}`})
		return
	}
	stored, err := orders.create(r, u, key, req.Item, req.Qty, ttl)
	if errors.Is(err, errKeyReused) {
		// The key's order was made by another request, before a crash
		// lost the record that would have said so: 422, as the record
		// would have answered.
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	if err != nil {
		http.Error(w, "could not store the order", http.StatusInternalServerError) // 5xx: the key is released
		return
	}
	time.Sleep(delay) // the payment call; a crash here leaves the order, which the retry finds
	writeJSON(w, http.StatusCreated, stored)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
