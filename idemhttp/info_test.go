package idemhttp

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
)

// TestInfoReachesTheHandlerAndTheAccessLog: the handler reads the key and
// tenant from its context, and an access log in front of the middleware
// reads how each request was answered.
func TestInfoReachesTheHandlerAndTheAccessLog(t *testing.T) {
	var seen *Info
	f := newFixture(t, idem.ScopeOptions{}, Options{}, func(w http.ResponseWriter, r *http.Request) {
		seen = nil
		if info, ok := InfoFrom(r.Context()); ok {
			seen = &Info{Key: info.Key, Tenant: info.Tenant, Outcome: info.Outcome}
		}
		w.WriteHeader(http.StatusCreated)
	})
	logged := func(r *http.Request) (int, idem.Outcome) {
		r, info := Track(r)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, r)
		return rec.Code, info.Outcome
	}

	code, outcome := logged(request("POST", `{"a":1}`, `"k1"`, "alice"))
	assert.Equal(t, http.StatusCreated, code)
	assert.Equal(t, idem.OutcomeExecuted, outcome)
	assert.Equal(t, &Info{Key: "k1", Tenant: "alice", Outcome: idem.OutcomeExecuted}, seen, "what the handler saw")

	_, outcome = logged(request("POST", `{"a":1}`, `"k1"`, "alice"))
	assert.Equal(t, idem.OutcomeReplayed, outcome)
	code, outcome = logged(request("POST", `{"a":2}`, `"k1"`, "alice"))
	assert.Equal(t, http.StatusUnprocessableEntity, code)
	assert.Equal(t, idem.OutcomeMismatch, outcome)
	code, outcome = logged(request("POST", `{"a":1}`, "", "alice"))
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, idem.OutcomeInvalid, outcome)
	code, outcome = logged(request("POST", `{"a":1}`, `"k2"`, ""))
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, idem.OutcomeInvalid, outcome)

	held, err := f.st.Scope("http", idem.ScopeOptions{})
	require.NoError(t, err)
	_, err = held.Tenant("alice").Claim(t.Context(), "busy", Fingerprint(request("POST", `{}`, "", ""), []byte(`{}`)))
	require.NoError(t, err)
	code, outcome = logged(request("POST", `{}`, `"busy"`, "alice"))
	assert.Equal(t, http.StatusConflict, code)
	assert.Equal(t, idem.OutcomeInProgress, outcome)

	r, info := Track(request("GET", "", "", "alice"))
	f.h.ServeHTTP(httptest.NewRecorder(), r)
	assert.Empty(t, info.Outcome, "a method the middleware does not cover")
	assert.Nil(t, seen, "and the handler finds no Info")
}
