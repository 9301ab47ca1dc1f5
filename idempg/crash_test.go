package idempg_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idempg"
	"github.com/idemkit/idem/idempg/pgtest"
	"github.com/idemkit/idem/internal/testenv"
)

// crashChildEnv tells TestCrashChild its tables and ledger:
// "RECORDS ORDERS LEDGER".
const crashChildEnv = "IDEM_PG_CRASH_CHILD"

const crashKeys = 300

// TestCrashChild is the child process of TestKilledClientsLeaveBothOrNeither;
// run on its own it returns at once. It orders every key, in a random
// order, each in a transaction that writes a business row and then waits
// a little (so that kills land inside transactions), and appends every
// acknowledged key to the ledger, synced, until it is killed.
func TestCrashChild(t *testing.T) {
	spec := strings.Fields(os.Getenv(crashChildEnv))
	if len(spec) != 3 {
		return
	}
	records, orders, ledgerPath := spec[0], spec[1], spec[2]
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv(pgtest.URLEnv))
	if err != nil {
		fmt.Println("fail", err)
		os.Exit(1)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = records // so that the parent can wait for its sessions to end
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fmt.Println("fail", err)
		os.Exit(1)
	}
	be, err := idempg.New(pool, idempg.Options{Table: records})
	if err != nil {
		fmt.Println("fail", err)
		os.Exit(1)
	}
	st, err := idem.Open(idem.Options{Backend: be, Lease: 300 * time.Millisecond, GCInterval: -1})
	if err != nil {
		fmt.Println("fail", err)
		os.Exit(1)
	}
	sc, _ := st.Scope("orders", idem.ScopeOptions{})
	ledger, err := os.OpenFile(ledgerPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Println("fail", err)
		os.Exit(1)
	}
	fmt.Println("running")
	for {
		for _, i := range rand.Perm(crashKeys) {
			key := fmt.Sprint("k", i)
			_, err := idempg.Do(ctx, sc, pool, key, nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
				if _, err := tx.Exec(ctx, "INSERT INTO "+orders+" (key) VALUES ($1)", key); err != nil {
					return nil, err
				}
				time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				return []byte("order " + key), nil
			})
			if err != nil {
				continue // held by an orphan still in its lease, say: another turn
			}
			_, _ = fmt.Fprintln(ledger, key)
			_ = ledger.Sync()
		}
	}
}

// TestKilledClientsLeaveBothOrNeither kills client processes with SIGKILL
// at random moments, mostly inside a transaction of Do, round after round
// on one set of keys, then checks what Postgres holds: no key has two
// business rows (no work ran twice), every key has a business row exactly
// when its record is completed (they committed together), and every
// acknowledged key has both.
func TestKilledClientsLeaveBothOrNeither(t *testing.T) {
	testenv.Long(t, "kills processes for seconds")
	ctx := context.Background()
	pool := pgtest.Pool(t)
	records, orders := pgtest.Table(t, pool), pgtest.Table(t, pool)
	be, err := idempg.New(pool, idempg.Options{Table: records})
	require.NoError(t, err)
	require.NoError(t, be.Migrate(ctx))
	_, err = pool.Exec(ctx, "CREATE TABLE "+orders+" (key text NOT NULL)")
	require.NoError(t, err)
	ledger := t.TempDir() + "/ledger"

	const rounds = 10
	named := func() int { // the children's sessions on the server
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", records).Scan(&n))
		return n
	}
	seen := 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+records+" "+orders+" "+ledger)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(out)
		require.True(t, lines.Scan(), "round %d: the child starts", round)
		require.Equal(t, "running", lines.Text())
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		seen += named()
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
	}
	// The server may still be committing a transaction that the last
	// child sent just before it died: read the tables once its sessions
	// have ended, or the business rows could be read before that commit
	// and the records after it.
	require.NotZero(t, seen, "the children's sessions are found by their name")
	require.Eventually(t, func() bool { return named() == 0 }, 30*time.Second, 10*time.Millisecond, "the killed clients' sessions end")

	rows := map[string]int{}
	r, err := pool.Query(ctx, "SELECT key, count(*) FROM "+orders+" GROUP BY key")
	require.NoError(t, err)
	for r.Next() {
		var k string
		var n int
		require.NoError(t, r.Scan(&k, &n))
		rows[k] = n
	}
	require.NoError(t, r.Err())
	st, err := idem.Open(idem.Options{Backend: be, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	completed := map[string]bool{}
	require.NoError(t, st.Records(ctx, idem.RecordFilter{Scope: "orders", Expired: true}, func(info idem.RecordInfo) error {
		if info.State == idem.StateCompleted {
			completed[info.Key] = true
		}
		return nil
	}))
	acked := map[string]bool{}
	b, err := os.ReadFile(ledger)
	require.NoError(t, err)
	for _, k := range strings.Fields(string(b)) {
		acked[k] = true
	}
	for i := range crashKeys {
		k := fmt.Sprint("k", i)
		assert.LessOrEqual(t, rows[k], 1, "%s: the work ran once", k)
		assert.Equal(t, completed[k], rows[k] == 1, "%s: the record and the work committed together", k)
		if acked[k] {
			assert.True(t, completed[k], "%s: an acknowledged key is stored", k)
		}
	}
	t.Logf("%d rounds: %d keys done, %d acknowledged", rounds, len(completed), len(acked))
	assert.NotEmpty(t, acked)
}

// TestKilledSessionsNeverRunTwice terminates the server processes of the
// store's connections again and again (pg_terminate_backend) while many
// callers order keys: calls fail with errors, none hangs, no work runs
// twice, and every key ends with its work and its record together.
func TestKilledSessionsNeverRunTwice(t *testing.T) {
	testenv.Long(t, "takes seconds")
	ctx := context.Background()
	killer := pgtest.Pool(t)
	var killed atomic.Int64
	disrupted(t, 30, 40, func(stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			var n int64
			err := killer.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = 'idem-disrupted'`).Scan(&n)
			if err == nil {
				killed.Add(n)
			}
		}
	})
	t.Logf("%d sessions killed", killed.Load())
}

// TestServerRestartNeverRunsTwice restarts the server while many callers
// order keys, with the same checks. It needs root and pg_ctlcluster, and
// runs only with IDEM_POSTGRES_RESTART=1: it disturbs every user of the
// server.
func TestServerRestartNeverRunsTwice(t *testing.T) {
	if os.Getenv("IDEM_POSTGRES_RESTART") == "" {
		t.Skip("restarts the server: set IDEM_POSTGRES_RESTART=1")
	}
	versions, err := os.ReadDir("/etc/postgresql")
	require.NoError(t, err)
	require.NotEmpty(t, versions)
	disrupted(t, 500, 2000, func(stop <-chan struct{}) {
		time.Sleep(100 * time.Millisecond)
		out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart").CombinedOutput()
		assert.NoError(t, err, "%s", out)
		<-stop
	})
}

// disrupted has 8 callers order keys keys, calls each (retried while
// they fail), while disrupt runs until stop closes; then it checks that no
// work ran twice and that every key's work committed with its record.
func disrupted(t *testing.T, calls, keys int, disrupt func(stop <-chan struct{})) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = "idem-disrupted"
	victim, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer victim.Close()
	s := newShopOn(t, victim, idem.ScopeOptions{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { disrupt(stop) })
	var failures atomic.Int64
	var callers sync.WaitGroup
	for w := range 8 {
		callers.Go(func() {
			for i := range calls {
				key := fmt.Sprint("k", (w*calls/4+i)%keys)
				for try := 0; try < 100; try++ {
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := idempg.Do(cctx, s.sc, s.pool, key, nil, s.order(key))
					cancel()
					if err == nil {
						break
					}
					failures.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	callers.Wait()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d calls failed and were retried", failures.Load())
	// Checked through connections of their own.
	check := pgtest.Pool(t)
	be, err := idempg.New(check, idempg.Options{Table: s.records})
	require.NoError(t, err)
	st, err := idem.Open(idem.Options{Backend: be, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	s.pool = check
	for i := range keys {
		k := fmt.Sprint("k", i)
		n := s.rows(t, k)
		assert.LessOrEqual(t, n, 1, "%s: the work ran once", k)
		info, err := st.Lookup(ctx, "orders", "", k)
		if n == 1 {
			require.NoError(t, err, k)
			assert.Equal(t, idem.StateCompleted, info.State, "%s: its record committed with it", k)
		}
	}
}
