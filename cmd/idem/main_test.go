package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
)

// cli runs the command line and returns its output and exit code.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// seed writes a store with records in several scopes, tenants and states
// and closes it.
func seed(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	// The store's clock runs an hour behind, so that evt-1 (kept for a
	// minute) is expired for the commands, which use the real clock.
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1, Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	require.NoError(t, err)
	pay, err := st.Scope("payments", idem.ScopeOptions{Orphans: idem.OrphanReport})
	require.NoError(t, err)
	hooks, err := st.Scope("webhooks", idem.ScopeOptions{TTL: time.Minute})
	require.NoError(t, err)
	for i := range 3 {
		_, err := pay.Tenant("acct_1").Do(ctx, fmt.Sprint("order-", i), []byte{0xab, byte(i)}, func(context.Context) ([]byte, error) {
			return []byte(fmt.Sprint(`{"charge":`, i, `}`)), nil
		})
		require.NoError(t, err)
	}
	_, err = pay.Tenant("acct 2").Do(ctx, "weird\tkey", nil, func(context.Context) ([]byte, error) {
		return nil, idem.Permanent(errors.New("card declined"))
	})
	require.ErrorIs(t, err, idem.ErrPermanent)
	cl, err := pay.Claim(ctx, "left-running", nil) // persisted, never finished: an orphan once closed
	require.NoError(t, err)
	require.True(t, cl.Owned())
	_, err = hooks.Do(ctx, "evt-1", nil, func(context.Context) ([]byte, error) { return []byte("ok"), nil })
	require.NoError(t, err)
	require.NoError(t, st.Close())
}

func dumpJSON(t *testing.T, out string) []idem.RecordInfo {
	t.Helper()
	var recs []idem.RecordInfo
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		var r idem.RecordInfo
		require.NoError(t, json.Unmarshal(s.Bytes(), &r), s.Text())
		recs = append(recs, r)
	}
	return recs
}

func TestDumpOffline(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)

	out, errOut, code := cli(t, "dump", "-dir", dir, "-json")
	require.Zero(t, code, errOut)
	recs := dumpJSON(t, out)
	require.Len(t, recs, 5, "the expired webhook is left out")
	assert.Equal(t, "payments", recs[0].Scope)
	assert.Equal(t, "", recs[0].Tenant, "the scope's own keys come first")
	assert.Equal(t, idem.StateOrphaned, recs[0].State)
	assert.Equal(t, "acct 2", recs[1].Tenant)
	assert.Equal(t, "weird\tkey", recs[1].Key)
	assert.Equal(t, idem.StateFailed, recs[1].State)
	assert.Equal(t, idem.StateCompleted, recs[2].State)
	assert.Equal(t, []byte{0xab, 0}, recs[2].Fingerprint)
	assert.Nil(t, recs[2].Value, "values only with -values")
	assert.Contains(t, out, `"fingerprint":"ab00"`)
	assert.Contains(t, out, `"created_at":"`)

	out, _, code = cli(t, "dump", "-dir", dir, "-json", "-scope", "payments", "-state", "orphaned")
	require.Zero(t, code)
	recs = dumpJSON(t, out)
	require.Len(t, recs, 1)
	assert.Equal(t, "left-running", recs[0].Key)

	out, _, _ = cli(t, "dump", "-dir", dir, "-json", "-scope", "payments", "-tenant", "acct_1", "-prefix", "order-", "-limit", "2", "-values")
	recs = dumpJSON(t, out)
	require.Len(t, recs, 2)
	assert.Equal(t, `{"charge":0}`, string(recs[0].Value))
	assert.Contains(t, out, `"value":"`, "base64 in JSON")

	out, _, _ = cli(t, "dump", "-dir", dir, "-json", "-expired", "-scope", "webhooks")
	recs = dumpJSON(t, out)
	require.Len(t, recs, 1)
	assert.True(t, recs[0].Expired)

	out, _, code = cli(t, "dump", "-dir", dir)
	require.Zero(t, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6)
	assert.Regexp(t, `^SCOPE\s+TENANT\s+KEY\s+STATE\s+CREATED\s+EXPIRES\s+BYTES$`, lines[0])
	assert.Contains(t, lines[2], `"acct 2"`, "tenants with spaces are quoted")
	assert.Contains(t, lines[2], `"weird\tkey"`, "keys are escaped")
	assert.Equal(t, strings.Index(lines[0], "STATE"), strings.Index(lines[3], "completed"), "columns line up")
}

func TestGetStatsGCDeleteOffline(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)

	out, errOut, code := cli(t, "get", "-dir", dir, "-scope", "payments", "-tenant", "acct_1", "order-1")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "state:       completed")
	assert.Contains(t, out, "fingerprint: ab01")
	assert.Contains(t, out, `value:       {"charge":1}`)

	out, _, code = cli(t, "get", "-dir", dir, "-scope", "payments", "-tenant", "acct_1", "-json", "order-2")
	require.Zero(t, code)
	var r idem.RecordInfo
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.Equal(t, `{"charge":2}`, string(r.Value))

	_, errOut, code = cli(t, "get", "-dir", dir, "-scope", "payments", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no record")

	out, _, code = cli(t, "stats", "-dir", dir, "-json")
	require.Zero(t, code)
	var s storeStats
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	assert.Equal(t, int64(6), s.Records)
	assert.Equal(t, int64(5), s.Scopes["payments"].Keys)
	assert.Equal(t, int64(4), s.States["completed"], "expired records count too")
	assert.Equal(t, int64(1), s.States["orphaned"])
	assert.Equal(t, int64(1), s.Expiry["expired"])
	assert.Equal(t, int64(5), s.Expiry["<1d"])
	assert.Positive(t, s.DiskBytes)
	out, _, code = cli(t, "stats", "-dir", dir)
	require.Zero(t, code)
	assert.Regexp(t, `payments\s+5`, out)

	out, errOut, code = cli(t, "gc", "-dir", dir)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "deleted 1 expired")

	out, errOut, code = cli(t, "delete", "-dir", dir, "-scope", "payments", "-tenant", "acct_1", "order-0")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "deleted order-0")
	_, _, code = cli(t, "get", "-dir", dir, "-scope", "payments", "-tenant", "acct_1", "order-0")
	assert.Equal(t, 1, code)
}

// hashTree returns a digest of every file's name and bytes under dir.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		sum := sha256.Sum256(b)
		sums[path] = hex.EncodeToString(sum[:])
		return err
	}))
	return sums
}

func TestReadOnlyCommandsChangeNothing(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)
	before := hashTree(t, dir)
	for _, args := range [][]string{
		{"dump", "-dir", dir, "-expired", "-values"},
		{"get", "-dir", dir, "-scope", "payments", "-tenant", "acct_1", "order-1"},
		{"stats", "-dir", dir},
	} {
		_, errOut, code := cli(t, args...)
		require.Zero(t, code, errOut)
	}
	assert.Equal(t, before, hashTree(t, dir))
}

const childDirEnv = "IDEM_CLI_CHILD_DIR"

// TestKilledWriterChild is the child of TestDumpOfKilledStore: it writes
// records, says so, and waits to be killed.
func TestKilledWriterChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		return
	}
	st, err := idem.Open(idem.Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	sc, _ := st.Scope("jobs", idem.ScopeOptions{Orphans: idem.OrphanReport})
	for i := range 100 {
		if _, err := sc.Do(context.Background(), fmt.Sprint("job-", i), nil, func(context.Context) ([]byte, error) { return []byte("done"), nil }); err != nil {
			fmt.Println("do:", err)
			os.Exit(1)
		}
	}
	go sc.Do(context.Background(), "running", nil, func(context.Context) ([]byte, error) {
		fmt.Println("ready")
		select {}
	})
	select {}
}

func TestDumpOfKilledStore(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)

	_, errOut, code := cli(t, "dump", "-dir", dir)
	assert.Equal(t, 1, code, "a live store cannot be opened")
	assert.Contains(t, errOut, "-url")

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	before := hashTree(t, dir)
	stdout, errOut, code := cli(t, "dump", "-dir", dir, "-json")
	require.Zero(t, code, errOut)
	recs := dumpJSON(t, stdout)
	require.Len(t, recs, 101)
	states := map[string]int{}
	for _, r := range recs {
		states[string(r.State)]++
	}
	assert.Equal(t, map[string]int{"completed": 100, "orphaned": 1}, states)
	assert.Equal(t, before, hashTree(t, dir), "not a byte of the killed store changed")
}

func TestLiveThroughAdminHandler(t *testing.T) {
	ctx := context.Background()
	st, err := idem.Open(idem.Options{Dir: t.TempDir(), GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	for i := range 3 {
		_, err := sc.Do(ctx, fmt.Sprint("k", i), []byte("fp"), func(context.Context) ([]byte, error) { return []byte("v"), nil })
		require.NoError(t, err)
	}
	readOnly := httptest.NewServer(st.AdminHandler(idem.AdminOptions{}))
	defer readOnly.Close()
	writable := httptest.NewServer(st.AdminHandler(idem.AdminOptions{AllowMutations: true}))
	defer writable.Close()

	out, errOut, code := cli(t, "dump", "-url", readOnly.URL, "-json", "-values")
	require.Zero(t, code, errOut)
	recs := dumpJSON(t, out)
	require.Len(t, recs, 3)
	assert.Equal(t, "v", string(recs[0].Value))
	assert.Equal(t, []byte("fp"), recs[0].Fingerprint)

	out, _, code = cli(t, "get", "-url", readOnly.URL, "-scope", "orders", "k1")
	require.Zero(t, code)
	assert.Contains(t, out, "state:       completed")
	_, errOut, code = cli(t, "get", "-url", readOnly.URL, "-scope", "orders", "missing")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "404")

	out, _, code = cli(t, "stats", "-url", readOnly.URL, "-json")
	require.Zero(t, code)
	assert.Contains(t, out, `"records":3`)

	for _, args := range [][]string{{"gc", "-url", readOnly.URL}, {"delete", "-url", readOnly.URL, "-scope", "orders", "k1"}} {
		_, errOut, code = cli(t, args...)
		assert.Equal(t, 1, code, "%v is refused by a read-only handler", args)
		assert.Contains(t, errOut, "403")
	}
	_, errOut, code = cli(t, "delete", "-url", writable.URL, "-scope", "orders", "k1")
	require.Zero(t, code, errOut)
	_, errOut, code = cli(t, "gc", "-url", writable.URL)
	require.Zero(t, code, errOut)
	res, err := sc.Do(ctx, "k1", []byte("fp"), func(context.Context) ([]byte, error) { return []byte("again"), nil })
	require.NoError(t, err)
	assert.False(t, res.Replayed, "the deleted key runs again")
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"dump"},
		{"dump", "-dir", "a", "-url", "http://b"},
		{"dump", "-dir", "a", "-state", "weird"},
		{"dump", "-dir", "a", "-tenant", "t"},
		{"dump", "-nope"},
		{"get", "-dir", "a", "key"},
		{"delete", "-dir", "a", "-scope", "s"},
		{"bench", "-goroutines", "0"},
		{"bench", "-workload", "nope"},
		{"dump", "-url", "ftp://x"},
	} {
		_, errOut, code := cli(t, args...)
		assert.Equal(t, 2, code, "%v: %s", args, errOut)
	}
	out, _, code := cli(t, "-h")
	assert.Zero(t, code)
	assert.Contains(t, out, "dump")
	_, errOut, code := cli(t, "dump", "-h")
	assert.Zero(t, code)
	assert.Contains(t, errOut, "examples:")
	out, _, code = cli(t, "version")
	assert.Zero(t, code)
	assert.True(t, strings.HasPrefix(out, "idem "))
}

func TestBench(t *testing.T) {
	out, errOut, code := cli(t, "bench", "-workload", "hot", "-goroutines", "2", "-duration", "100ms", "-json")
	require.Zero(t, code, errOut)
	var rows []benchRow
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var r benchRow
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		rows = append(rows, r)
	}
	require.Len(t, rows, 4)
	for _, r := range rows {
		assert.Positive(t, r.OpsPerSec, r.Target)
		assert.Positive(t, r.VsBadger, r.Target)
	}
	out, _, code = cli(t, "bench", "-workload", "unique", "-goroutines", "1", "-duration", "50ms", "-targets", "idem-do,badger-naive")
	require.Zero(t, code)
	assert.Contains(t, out, "× badger-naive")
	assert.Contains(t, out, "idem-do")

	// A blind write runs with new keys only.
	out, _, code = cli(t, "bench", "-workload", "unique,hot", "-goroutines", "4", "-duration", "50ms", "-targets", "idem-do,badger-write,badger-ingest", "-json")
	require.Zero(t, code)
	assert.Equal(t, 1, strings.Count(out, `"target":"badger-write","workload":"unique"`), out)
	assert.Equal(t, 1, strings.Count(out, `"target":"badger-ingest","workload":"unique"`), out)
	assert.Equal(t, 4, strings.Count(out, "\n"), out)
}

func TestBenchWritesACPUProfile(t *testing.T) {
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Skipf("a CPU profile runs already (go test -cpuprofile?): %v", err)
	}
	pprof.StopCPUProfile()
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	_, errOut, code := cli(t, "bench", "-workload", "hot", "-goroutines", "2", "-duration", "100ms", "-targets", "idem-do", "-cpuprofile", path)
	require.Zero(t, code, errOut)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f) // a profile is gzipped protocol buffers
	require.NoError(t, err)
	n, err := io.Copy(io.Discard, zr)
	require.NoError(t, err)
	assert.Positive(t, n)

	_, errOut, code = cli(t, "bench", "-duration", "10ms", "-cpuprofile", filepath.Join(t.TempDir(), "no", "such", "dir"))
	assert.NotZero(t, code)
	assert.Contains(t, errOut, "no such file")
}

// TestMain runs the torture child when this test binary is one (torture
// starts the binary it runs in: here, this one).
func TestMain(m *testing.M) {
	if runTortureChildFromEnv() {
		return
	}
	os.Exit(m.Run())
}

func TestTortureShort(t *testing.T) {
	for _, sync := range []string{"-sync=false", "-sync=true"} {
		out, errOut, code := cli(t, "torture", "-rounds", "8", "-keys", "2000", "-goroutines", "4", sync, "-json")
		require.Zero(t, code, errOut)
		var rep tortureReport
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		t.Logf("%s: %+v", sync, rep)
		assert.Positive(t, rep.Executions)
		assert.Positive(t, rep.Acknowledged)
		assert.Positive(t, rep.Orphans+rep.Reruns["rerun"], "some kills landed mid-function")
		assert.Zero(t, rep.violations())
	}
}

func TestTortureFindsALostResult(t *testing.T) {
	dir := t.TempDir()
	cfg := tortureConfig{Dir: filepath.Join(dir, "store"), Ledger: filepath.Join(dir, "ledger")}
	st, err := idem.Open(idem.Options{Dir: cfg.Dir})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	// The ledger says k0 ran twice under report and was acknowledged, but
	// the store never heard of it: three violations.
	require.NoError(t, os.WriteFile(cfg.Ledger, []byte("exec report k0 e1\nack report k0 e1\nexec report k0 e2\n"), 0o644))
	rep, err := checkTorture(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.AcknowledgedLost)
	assert.Equal(t, 1, rep.DoubleAfterAck)
	assert.Equal(t, 1, rep.DoubleUnderReport)
}

// TestKeysThatAreNotUTF8 stores a key and a tenant that are not valid
// UTF-8: the table shows them quoted with \x escapes (never as U+FFFD,
// which would make two keys look alike), JSON carries their exact bytes
// in base64, and the shown form reads back, offline and through the
// admin handler.
func TestKeysThatAreNotUTF8(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	sc, err := st.Scope("s", idem.ScopeOptions{})
	require.NoError(t, err)
	for _, key := range []string{"\xff\xfe-1", "\xfe\xff-1"} {
		_, err = sc.Tenant("t\xff").Do(ctx, key, nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
		require.NoError(t, err)
	}
	check := func(t *testing.T, where ...string) {
		out, errOut, code := cli(t, append([]string{"dump"}, where...)...)
		require.Zero(t, code, errOut)
		assert.Contains(t, out, `"\xff\xfe-1"`)
		assert.Contains(t, out, `"\xfe\xff-1"`)
		assert.Contains(t, out, `"t\xff"`)
		assert.NotContains(t, out, "\uFFFD")

		out, _, code = cli(t, append(append([]string{"dump"}, where...), "-json")...)
		require.Zero(t, code)
		assert.NotContains(t, out, `\ufffd`)
		assert.Contains(t, out, `"key_base64":"//4tMQ=="`)
		recs := dumpJSON(t, out)
		require.Len(t, recs, 2)
		assert.Equal(t, "\xfe\xff-1", recs[0].Key, "JSON reads back to the exact bytes")
		assert.Equal(t, "t\xff", recs[0].Tenant)

		out, errOut, code = cli(t, append(append([]string{"get"}, where...), "-scope", "s", "-tenant", `"t\xff"`, `"\xff\xfe-1"`)...)
		require.Zero(t, code, errOut)
		assert.Contains(t, out, `key:         "\xff\xfe-1"`)
	}
	srv := httptest.NewServer(st.AdminHandler(idem.AdminOptions{}))
	defer srv.Close()
	t.Run("url", func(t *testing.T) { check(t, "-url", srv.URL) })
	srv.Close()
	require.NoError(t, st.Close())
	t.Run("dir", func(t *testing.T) { check(t, "-dir", dir) })

	out, errOut, code := cli(t, "delete", "-dir", dir, "-scope", "s", "-tenant", `"t\xff"`, `"\xff\xfe-1"`)
	require.Zero(t, code, errOut)
	assert.Equal(t, "deleted \"\\xff\\xfe-1\"\n", out)
}

// TestEveryCommandRefusesADirectoryThatIsNotAStore runs each command on a
// mistyped directory and on the parent of a store: each refuses, names
// the store one level down, and creates nothing.
func TestEveryCommandRefusesADirectoryThatIsNotAStore(t *testing.T) {
	parent := t.TempDir()
	seed(t, filepath.Join(parent, "idem"))
	empty := t.TempDir()
	for _, args := range [][]string{
		{"dump"}, {"stats"}, {"gc"},
		{"get", "-scope", "payments", "k"}, {"delete", "-scope", "payments", "k"},
	} {
		for _, dir := range []string{empty, parent, filepath.Join(empty, "missing")} {
			cmd := append([]string{args[0], "-dir", dir}, args[1:]...)
			_, errOut, code := cli(t, cmd...)
			assert.Equal(t, 1, code, "%v", cmd)
			switch dir {
			case parent:
				assert.Contains(t, errOut, "is not an idem store, but "+filepath.Join(parent, "idem")+" is", "%v", cmd)
			case empty:
				assert.Contains(t, errOut, "is not an idem store", "%v", cmd)
			default:
				assert.Contains(t, errOut, "no such file or directory", "%v", cmd)
			}
		}
	}
	entries, err := os.ReadDir(empty)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was created")
	_, err = os.Stat(filepath.Join(parent, "MANIFEST"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestTokenForTheAdminHandler(t *testing.T) {
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	srv := httptest.NewServer(st.AdminHandler(idem.AdminOptions{Token: "s3cret", AllowMutations: true}))
	defer srv.Close()
	_, errOut, code := cli(t, "stats", "-url", srv.URL)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "401")
	_, errOut, code = cli(t, "stats", "-url", srv.URL, "-token", "s3cret")
	assert.Zero(t, code, errOut)
	t.Setenv("IDEM_ADMIN_TOKEN", "s3cret")
	_, errOut, code = cli(t, "gc", "-url", srv.URL)
	assert.Zero(t, code, errOut)
}

// TestAdminClientAndHandlerAgree keeps the CLI's client of the admin
// handler in step with the handler: for every filter flag, and for one
// record, the answer through -url is what the store itself gives.
func TestAdminClientAndHandlerAgree(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1, ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	srv := httptest.NewServer(st.AdminHandler(idem.AdminOptions{}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		f    idem.RecordFilter
	}{
		{nil, idem.RecordFilter{}},
		{[]string{"-scope", "payments"}, idem.RecordFilter{Scope: "payments"}},
		{[]string{"-scope", "payments", "-tenant", "acct_1"}, idem.RecordFilter{Scope: "payments", Tenant: "acct_1"}},
		{[]string{"-state", "orphaned"}, idem.RecordFilter{State: idem.StateOrphaned}},
		{[]string{"-prefix", "order-"}, idem.RecordFilter{KeyPrefix: "order-"}},
		{[]string{"-expired"}, idem.RecordFilter{Expired: true}},
		{[]string{"-limit", "2"}, idem.RecordFilter{Limit: 2}},
		{[]string{"-values"}, idem.RecordFilter{Values: true}},
	} {
		out, errOut, code := cli(t, append([]string{"dump", "-url", srv.URL, "-json"}, tc.args...)...)
		require.Zero(t, code, errOut)
		var want []idem.RecordInfo
		require.NoError(t, st.Records(ctx, tc.f, func(r idem.RecordInfo) error { want = append(want, r); return nil }))
		got := dumpJSON(t, out)
		require.Len(t, got, len(want), "%v", tc.args)
		for i := range want {
			assert.Equal(t, want[i].Key, got[i].Key, "%v", tc.args)
			assert.Equal(t, want[i].State, got[i].State, "%v", tc.args)
			assert.Equal(t, want[i].Value, got[i].Value, "%v", tc.args)
			assert.Equal(t, want[i].Expired, got[i].Expired, "%v", tc.args)
		}
	}
	out, errOut, code := cli(t, "get", "-url", srv.URL, "-json", "-scope", "payments", "-tenant", "acct_1", "order-1")
	require.Zero(t, code, errOut)
	want, err := st.Lookup(ctx, "payments", "acct_1", "order-1")
	require.NoError(t, err)
	got := dumpJSON(t, out)
	require.Len(t, got, 1)
	assert.Equal(t, want.Value, got[0].Value)
	assert.Equal(t, want.Fingerprint, got[0].Fingerprint)
}
