package idem

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// AdminOptions configures [Store.AdminHandler].
type AdminOptions struct {
	// AllowMutations enables POST /gc and POST /delete. Off by default:
	// the handler is read-only.
	AllowMutations bool
}

// AdminHandler returns an HTTP handler for operators (the idem CLI's -url
// flag talks to it), to mount on a private address of the process that
// owns the store, since no other process can open it while it runs. It
// never shows more than the records' metadata unless asked for values.
//
//	GET  /stats                          Stats as JSON
//	GET  /records?scope=&tenant=&state=&prefix=&expired=1&limit=&values=1
//	                                     RecordInfo as JSON lines, streamed
//	GET  /record?scope=&tenant=&key=     one RecordInfo, with its value
//	POST /gc                             run a collection; GCStats as JSON
//	POST /delete?scope=&tenant=&key=     delete one record
//
// Errors are JSON objects {"error": "..."} with a 4xx or 5xx status.
func (s *Store) AdminHandler(opts AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /records", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, err := strconv.Atoi(q.Get("limit"))
		if q.Get("limit") != "" && (err != nil || limit < 0) {
			writeError(w, http.StatusBadRequest, errors.New("limit: want a whole number"))
			return
		}
		f := RecordFilter{
			Scope: q.Get("scope"), Tenant: q.Get("tenant"), State: q.Get("state"),
			KeyPrefix: q.Get("prefix"), Expired: q.Get("expired") == "1",
			Limit: limit, Values: q.Get("values") == "1",
		}
		w.Header().Set("Content-Type", "application/jsonl")
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		n := 0
		err = s.Records(r.Context(), f, func(info RecordInfo) error {
			if err := enc.Encode(info); err != nil {
				return err
			}
			if n++; n%256 == 0 && flusher != nil {
				flusher.Flush()
			}
			return nil
		})
		if err != nil && n == 0 {
			writeError(w, statusOf(err), err)
		}
	})
	mux.HandleFunc("GET /record", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		info, err := s.Lookup(r.Context(), q.Get("scope"), q.Get("tenant"), q.Get("key"))
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	// mutation guards a handler that changes the store.
	mutation := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !opts.AllowMutations {
				writeError(w, http.StatusForbidden, errMutationsOff)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /gc", mutation(func(w http.ResponseWriter, r *http.Request) {
		stats, err := s.GC(r.Context())
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, stats)
	}))
	mux.HandleFunc("POST /delete", mutation(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := s.Delete(r.Context(), q.Get("scope"), q.Get("tenant"), q.Get("key")); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return mux
}

var errMutationsOff = errors.New("idem: this admin endpoint is read-only (AdminOptions.AllowMutations)")

// statusOf maps the store's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrInvalidScope):
		return http.StatusBadRequest
	case errors.Is(err, ErrInProgress):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
