package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemhttp"
)

func TestGetShowsAnHTTPResponse(t *testing.T) {
	dir := t.TempDir()
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	mw, err := idemhttp.New(sc, idemhttp.Options{Global: true})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/orders/7")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":7}`)
	}))
	req := httptest.NewRequest("POST", "/orders", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", "k1")
	h.ServeHTTP(httptest.NewRecorder(), req)
	require.NoError(t, st.Close())

	out, errOut, code := cli(t, "get", "-dir", dir, "-scope", "orders", "k1")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "response:    201 Created\n")
	assert.Contains(t, out, "  Location: /orders/7\n")
	assert.Contains(t, out, `body:        {"id":7}`)
	assert.NotContains(t, out, "hex ")

	out, errOut, code = cli(t, "get", "-dir", dir, "-scope", "orders", "-raw", "k1")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "value:       hex 0101", "the stored bytes")
	assert.NotContains(t, out, "response:")
}

func TestFlagAfterTheKeyIsNamed(t *testing.T) {
	_, errOut, code := cli(t, "get", "-dir", "d", "-scope", "s", "KEY", "-tenant", "t")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `-tenant comes after KEY "KEY"; flags go before KEY`)
	_, errOut, code = cli(t, "delete", "-dir", "d", "-scope", "s", "KEY", "-tenant", "t")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "flags go before KEY")
}

func TestDumpTableCutsLongKeys(t *testing.T) {
	dir := t.TempDir()
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	sc, err := st.Scope("s", idem.ScopeOptions{})
	require.NoError(t, err)
	long := strings.Repeat("k", 255)
	for _, key := range []string{"short", long} {
		_, err := sc.Do(context.Background(), key, nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())

	out, errOut, code := cli(t, "dump", "-dir", dir)
	require.Zero(t, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	for _, l := range lines {
		assert.Less(t, len(l), 160, "no row is as wide as the long key: %q", l)
	}
	assert.Contains(t, out, strings.Repeat("k", cellWidth-1)+"…")
	out, _, _ = cli(t, "dump", "-dir", dir, "-json")
	assert.Contains(t, out, `"key":"`+long+`"`, "JSON keeps the key whole")
}

func TestDumpAtAServerThatIsNotAnAdminEndpoint(t *testing.T) {
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	out, errOut, code := cli(t, "dump", "-url", other.URL)
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "no table header before the error")
	assert.Contains(t, errOut, "is not an idem admin endpoint")

	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	out, errOut, code = cli(t, "dump", "-url", dead.URL)
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "no table header before the error")
	assert.Contains(t, errOut, "connection refused")

	// An empty store prints the header alone.
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	admin := httptest.NewServer(st.AdminHandler(idem.AdminOptions{}))
	defer admin.Close()
	out, errOut, code = cli(t, "dump", "-url", admin.URL)
	require.Zero(t, code, errOut)
	assert.Equal(t, "SCOPE", strings.Fields(out)[0])
	assert.Equal(t, 1, strings.Count(out, "\n"))
}

// snakeCase matches every name the JSON output uses, map keys that are
// data (scope names, states, expiry buckets) aside.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// assertSnakeCase checks the object names of a JSON document, except the
// keys of the objects named in data, which are the store's own names.
func assertSnakeCase(t *testing.T, doc string, data ...string) {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(doc), &v), doc)
	var walk func(v any, isData bool)
	walk = func(v any, isData bool) {
		switch v := v.(type) {
		case map[string]any:
			for name, child := range v {
				if !isData {
					assert.Regexp(t, snakeCase, name, doc)
				}
				walk(child, !isData && contains(data, name))
			}
		case []any:
			for _, child := range v {
				walk(child, false)
			}
		}
	}
	walk(v, false)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestJSONIsSnakeCaseWithDurationsInSeconds(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)
	out, errOut, code := cli(t, "stats", "-dir", dir, "-json")
	require.Zero(t, code, errOut)
	assertSnakeCase(t, out, "scopes", "states", "expiry")
	assert.Contains(t, out, `"payments":{"keys":5,`)

	out, errOut, code = cli(t, "gc", "-dir", dir, "-json")
	require.Zero(t, code, errOut)
	assertSnakeCase(t, out)
	var gc map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &gc))
	assert.Contains(t, gc, "duration_seconds")
	assert.Less(t, gc["duration_seconds"].(float64), 60.0, "seconds, not nanoseconds")
	assert.Equal(t, 1.0, gc["deleted"])

	// Through the admin handler the same names, and a GCStats reads back.
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	srv := httptest.NewServer(st.AdminHandler(idem.AdminOptions{AllowMutations: true}))
	defer srv.Close()
	out, errOut, code = cli(t, "gc", "-url", srv.URL, "-json")
	require.Zero(t, code, errOut)
	assertSnakeCase(t, out)
	var back idem.GCStats
	require.NoError(t, json.Unmarshal([]byte(out), &back))
	assert.Equal(t, int64(5), back.Live)

	out, errOut, code = cli(t, "get", "-url", srv.URL, "-json", "-scope", "payments", "-tenant", "acct_1", "order-1")
	require.Zero(t, code, errOut)
	assertSnakeCase(t, out)
}

func TestBenchExplainsItsColumns(t *testing.T) {
	out, errOut, code := cli(t, "bench", "-workload", "unique", "-goroutines", "1", "-duration", "50ms", "-targets", "idem-do")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "claimed: the share of calls")
	assert.NotContains(t, out, "×", "no ratio column without a baseline")
}

func TestVersionNamesTheCommit(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	assert.Equal(t, "idem v0.4.0 (commit 0123456789ab, 2026-12-01T10:00:00Z, modified) go1.26.0", versionLine(info))
	assert.Equal(t, "idem (devel) go1.26.0", versionLine(&debug.BuildInfo{GoVersion: "go1.26.0"}))
}
