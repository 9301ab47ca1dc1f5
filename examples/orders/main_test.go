package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/idempg/pgtest"
	"github.com/idemkit/idem/idemredis/redistest"
)

const childArgsEnv = "ORDERS_CHILD_ARGS"

// TestServiceChild runs the service in a child process for the end-to-end
// tests; run on its own it returns at once.
func TestServiceChild(t *testing.T) {
	args := os.Getenv(childArgsEnv)
	if args == "" {
		return
	}
	if err := run(context.Background(), strings.Split(args, " "), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

// service is a running child process of the service.
type service struct {
	cmd   *exec.Cmd
	base  string
	admin string // the admin endpoint's base URL, with -admin
}

func startService(t *testing.T, args ...string) *service {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServiceChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(append([]string{"-addr", "127.0.0.1:0"}, args...), " "))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := regexp.MustCompile(`orders: listening"? addr=(\S+)`)
	admin := regexp.MustCompile(`orders: admin endpoint"? addr=(\S+)`)
	wantAdmin := strings.Contains(strings.Join(args, " "), "-admin")
	lines := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	svc := &service{cmd: cmd}
	for lines.Scan() {
		if m := addr.FindStringSubmatch(lines.Text()); m != nil {
			svc.base = "http://" + m[1]
		}
		if m := admin.FindStringSubmatch(lines.Text()); m != nil {
			svc.admin = "http://" + m[1]
		}
		if svc.base != "" && (svc.admin != "" || !wantAdmin) {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return svc
		}
	}
	t.Fatal("the service did not start")
	return nil
}

func (s *service) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
	_ = s.cmd.Wait()
}

type reply struct {
	status   int
	replayed bool
	order    order
}

func (s *service) post(t *testing.T, user, key, body string) (reply, error) {
	req, err := http.NewRequest("POST", s.base+"/orders", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+user)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", `"`+key+`"`)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	if resp.StatusCode == http.StatusCreated {
		err = json.NewDecoder(resp.Body).Decode(&r.order)
	}
	return r, err
}

func (s *service) orders(t *testing.T, user string) []order {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+user)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var list []order
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	return list
}

func TestOrdersEndToEnd(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, "-dir", dir, "-wait", "10s")

	first, err := svc.post(t, "alice", "k1", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.status)
	assert.False(t, first.replayed)
	assert.Equal(t, "tea", first.order.Item)
	assert.Equal(t, 2, first.order.Qty)
	assert.True(t, strings.HasPrefix(first.order.ID, "ord_"))

	again, err := svc.post(t, "alice", "k1", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	assert.True(t, again.replayed)
	assert.Equal(t, first.order, again.order)

	other, err := svc.post(t, "alice", "k1", `{"item":"cake","qty":1}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnprocessableEntity, other.status, "the key with another payload")

	bob, err := svc.post(t, "bob", "k1", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, bob.status, "another user's key is his own")
	assert.NotEqual(t, first.order.ID, bob.order.ID)

	missing, err := svc.post(t, "alice", "", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, missing.status)
	bad, err := svc.post(t, "alice", "k-bad", `{"item":"","qty":0}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, bad.status)

	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for range 20 {
		wg.Go(func() {
			r, err := svc.post(t, "alice", "k2", `{"item":"scone","qty":1}`)
			if assert.NoError(t, err) && assert.Equal(t, http.StatusCreated, r.status) {
				ids <- r.order.ID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	assert.Len(t, seen, 1, "concurrent duplicates get one order")
	assert.Len(t, svc.orders(t, "alice"), 2)
	assert.Len(t, svc.orders(t, "bob"), 1)

	// Orders and keys survive a restart.
	svc.kill(t)
	svc = startService(t, "-dir", dir)
	again, err = svc.post(t, "alice", "k1", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	assert.True(t, again.replayed)
	assert.Equal(t, first.order, again.order)
	assert.Len(t, svc.orders(t, "alice"), 2)
}

// TestKillBetweenOrderAndRecord kills the service after it wrote an order
// and before it recorded the response, the one window the idempotency
// record cannot cover; the retry must find the order, not make another.
func TestKillBetweenOrderAndRecord(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, "-dir", dir, "-delay", "30s")
	go func() { _, _ = svc.post(t, "carol", "k", `{"item":"tea","qty":1}`) }()
	userDir := filepath.Join(dir, "orders", fmt.Sprintf("%x", "carol"))
	require.Eventually(t, func() bool {
		entries, _ := filepath.Glob(filepath.Join(userDir, "*", "*-ord_*.json"))
		return len(entries) == 1
	}, 20*time.Second, 5*time.Millisecond, "the order is written")
	svc.kill(t)

	svc = startService(t, "-dir", dir)
	other, err := svc.post(t, "carol", "k", `{"item":"cake","qty":3}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnprocessableEntity, other.status, "the key's order was made by another request")
	r, err := svc.post(t, "carol", "k", `{"item":"tea","qty":1}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, r.status)
	list := svc.orders(t, "carol")
	require.Len(t, list, 1, "no duplicate order")
	assert.Equal(t, list[0], r.order)

	// And repeatedly, killed at random moments under a stream of retries.
	svc.kill(t)
	for round := range 5 {
		svc = startService(t, "-dir", dir, "-delay", "5ms")
		key := fmt.Sprint("stream-", round)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 50 {
				if _, err := svc.post(t, "dave", key, `{"item":"tea","qty":1}`); err != nil {
					return // killed
				}
			}
		}()
		time.Sleep(time.Duration(5+round*7) * time.Millisecond)
		svc.kill(t)
		<-done
	}
	svc = startService(t, "-dir", dir)
	for round := range 5 {
		r, err := svc.post(t, "dave", fmt.Sprint("stream-", round), `{"item":"tea","qty":1}`)
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, r.status)
	}
	assert.Len(t, svc.orders(t, "dave"), 5, "one order per key, whatever was killed when")
}

func TestAdminEndpoint(t *testing.T) {
	svc := startService(t, "-dir", t.TempDir(), "-admin", "127.0.0.1:0")
	_, err := svc.post(t, "erin", "k", `{"item":"tea","qty":1}`)
	require.NoError(t, err)
	resp, err := http.Get(svc.admin + "/records?values=1")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `"scope":"orders","tenant":"erin","key":"k","state":"completed"`)
	resp, err = http.Post(svc.admin+"/gc", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the demo's admin endpoint is read-only")

	_, err = svc.post(t, "erin", "k", `{"item":"tea","qty":1}`)
	require.NoError(t, err)
	resp, err = http.Get(svc.admin + "/metrics")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `idem_calls_total{outcome="executed",scope="orders"} 1`)
	assert.Contains(t, string(body), `idem_calls_total{outcome="replayed",scope="orders"} 1`)
	assert.Contains(t, string(body), `idem_keys{scope="orders"} 1`)
}

// TestInstancesShareRedis runs two instances on one Redis and one orders
// directory, and sends the same order to both at once, again and again:
// one order per key, whichever instance each request reached.
func TestInstancesShareRedis(t *testing.T) {
	addr := redistest.Addr(t)
	dir := t.TempDir()
	rdb := redistest.Client(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "orders:*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	a := startService(t, "-dir", dir, "-redis", addr, "-delay", "50ms", "-wait", "5s")
	b := startService(t, "-dir", dir, "-redis", addr, "-delay", "50ms", "-wait", "5s")
	key := fmt.Sprint("shared-", time.Now().UnixNano())
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for i := range 20 {
		wg.Go(func() {
			svc := []*service{a, b}[i%2]
			r, err := svc.post(t, "carol", key, `{"item":"tea","qty":1}`)
			if assert.NoError(t, err) && assert.Equal(t, http.StatusCreated, r.status) {
				ids <- r.order.ID
			}
		})
	}
	wg.Wait()
	close(ids)
	first := ""
	for id := range ids {
		if first == "" {
			first = id
		}
		assert.Equal(t, first, id, "every request got the same order")
	}
	assert.Len(t, a.orders(t, "carol"), 1, "one order in all")
}

// pgURL returns the test server's URL with a schema of t's own as the
// search path, so that the example's tables are t's alone.
func pgURL(t *testing.T) string {
	t.Helper()
	pool := pgtest.Pool(t)
	schema := pgtest.Table(t, pool) // a fresh name
	_, err := pool.Exec(context.Background(), "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestOrdersOnPostgres runs the example on Postgres: the order and the
// key's record commit in one transaction. Replays, 422, two instances on
// one database that behave as one, and a kill in the middle of a request:
// nothing of it committed, so the retry makes the order, once, whatever
// body it carries.
func TestOrdersOnPostgres(t *testing.T) {
	dsn := pgURL(t)
	dir := t.TempDir()
	a := startService(t, "-dir", dir, "-postgres", dsn, "-wait", "10s")
	first, err := a.post(t, "alice", "k1", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.status)
	again, err := a.post(t, "alice", "k1", `{"item":"tea","qty":2}`)
	require.NoError(t, err)
	assert.True(t, again.replayed)
	assert.Equal(t, first.order, again.order)
	other, err := a.post(t, "alice", "k1", `{"item":"cake","qty":1}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnprocessableEntity, other.status)

	b := startService(t, "-dir", t.TempDir(), "-postgres", dsn, "-delay", "50ms", "-wait", "10s")
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for i := range 20 {
		wg.Go(func() {
			svc := []*service{a, b}[i%2]
			r, err := svc.post(t, "carol", "shared", `{"item":"tea","qty":1}`)
			if assert.NoError(t, err) && assert.Equal(t, http.StatusCreated, r.status) {
				ids <- r.order.ID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	assert.Len(t, seen, 1, "every request got the same order, whichever instance it reached")
	assert.Len(t, a.orders(t, "carol"), 1)

	slow := startService(t, "-dir", t.TempDir(), "-postgres", dsn, "-delay", "30s")
	go func() { _, _ = slow.post(t, "dave", "k", `{"item":"tea","qty":1}`) }()
	time.Sleep(500 * time.Millisecond) // inside the order's transaction
	slow.kill(t)
	assert.Empty(t, a.orders(t, "dave"), "the killed request committed nothing")
	var r reply
	require.Eventually(t, func() bool { // once its claim's lease has lapsed
		r, err = a.post(t, "dave", "k", `{"item":"cake","qty":3}`)
		return err == nil && r.status == http.StatusCreated
	}, 20*time.Second, 100*time.Millisecond)
	assert.Equal(t, "cake", r.order.Item, "the order this request asks for, never another request's")
	list := a.orders(t, "dave")
	require.Len(t, list, 1)
	assert.Equal(t, r.order, list[0])
}
