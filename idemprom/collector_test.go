package idemprom_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemprom"
)

func TestCollector(t *testing.T) {
	metrics := idemprom.New()
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1, Observer: metrics})
	require.NoError(t, err)
	defer st.Close()
	sc, err := st.Scope("payments", idem.ScopeOptions{})
	require.NoError(t, err)
	ctx := context.Background()
	ok := func(context.Context) ([]byte, error) { return []byte("charged"), nil }
	_, err = sc.Do(ctx, "secret-key-1", []byte("fp"), ok)
	require.NoError(t, err)
	_, err = sc.Do(ctx, "secret-key-1", []byte("fp"), ok)
	require.NoError(t, err)
	_, err = sc.Do(ctx, "secret-key-1", []byte("other"), ok)
	require.ErrorIs(t, err, idem.ErrFingerprintMismatch)
	_, err = sc.Do(ctx, "k2", nil, func(context.Context) ([]byte, error) { return nil, errors.New("later") })
	require.Error(t, err)
	_, err = st.GC(ctx)
	require.NoError(t, err)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(metrics))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP idem_calls_total Calls of Do and Claim, by outcome: executed, replayed, mismatch, in_progress, outcome_unknown, scope_full, disk_full, invalid, canceled, error.
# TYPE idem_calls_total counter
idem_calls_total{outcome="executed",scope="payments"} 2
idem_calls_total{outcome="mismatch",scope="payments"} 1
idem_calls_total{outcome="replayed",scope="payments"} 1
# HELP idem_keys Keys the store holds, by scope.
# TYPE idem_keys gauge
idem_keys{scope="payments"} 1
# HELP idem_claims_in_flight Claims held now.
# TYPE idem_claims_in_flight gauge
idem_claims_in_flight 0
# HELP idem_collections_total Runs of the expiry collector.
# TYPE idem_collections_total counter
idem_collections_total 1
`), "idem_calls_total", "idem_keys", "idem_claims_in_flight", "idem_collections_total"))
	assert.Equal(t, 2, testutil.CollectAndCount(metrics, "idem_execution_duration_seconds"), "completed and released")

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems, "promlint")

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.NotContains(t, string(body), "secret-key", "no key in any label")
}

// TestAdminHandlerServesMetrics: the admin endpoint serves /metrics when
// given a handler, behind its own guards.
func TestAdminHandlerServesMetrics(t *testing.T) {
	metrics := idemprom.New()
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1, Observer: metrics})
	require.NoError(t, err)
	defer st.Close()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(metrics))
	srv := httptest.NewServer(st.AdminHandler(idem.AdminOptions{Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Token: "t"}))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the admin guards apply")

	req.Header.Set("Authorization", "Bearer t")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "idem_claims_in_flight 0")
}
