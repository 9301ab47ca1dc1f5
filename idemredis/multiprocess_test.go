package idemredis_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/idemredis/redistest"
)

// The multi-process tests run copies of the test binary as the instances
// of a service: childEnv names what the copy does, the other variables
// where its Redis key space is.
const (
	childEnv  = "IDEMREDIS_CHILD"
	addrEnv   = "IDEMREDIS_CHILD_ADDR"
	prefixEnv = "IDEMREDIS_CHILD_PREFIX"
	ledgerEnv = "IDEMREDIS_CHILD_LEDGER"
)

// childLease is the lease of the child instances: short, so that the
// tests see it lapse.
const (
	childLease   = 300 * time.Millisecond
	childRenewal = 100 * time.Millisecond
)

// child is the main of a child process.
func child() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(addrEnv)})
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: os.Getenv(prefixEnv)})
	check(err)
	st, err := idem.Open(idem.Options{Backend: be, Lease: childLease, LeaseRenewal: childRenewal})
	check(err)
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	check(err)
	ctx := context.Background()
	pid := os.Getpid()

	switch mode := os.Getenv(childEnv); mode {
	case "storm":
		// Every instance asks for every key at once; each execution is
		// appended to the shared ledger before it is acknowledged.
		ledger, err := os.OpenFile(os.Getenv(ledgerEnv), os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0)
		check(err)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range stormKeys {
					key := fmt.Sprint("key-", (i+g*7)%stormKeys)
					res, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
						_, err := fmt.Fprintf(ledger, "exec %s %d\n", key, pid)
						time.Sleep(time.Millisecond) // work that takes a while
						return fmt.Appendf(nil, "%s by %d", key, pid), err
					})
					check(err)
					mu.Lock()
					fmt.Printf("ack %s %s\n", key, strings.ReplaceAll(string(res.Value), " ", "_"))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	case "hang":
		_, err := sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) {
			fmt.Println("started")
			select {} // killed here
		})
		check(err)
	case "pause":
		_, err := sc.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
			fmt.Println("started")
			<-ctx.Done()
			fmt.Printf("cancelled: %v\n", context.Cause(ctx))
			return []byte("stale"), nil
		})
		fmt.Printf("done: %v\n", err)
	default:
		check(fmt.Errorf("unknown mode %q", mode))
	}
	check(st.Close())
}

func check(err error) {
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

const stormKeys = 40

// start runs a child in mode on the key space prefix, and returns it with
// a reader of its output lines.
func start(t *testing.T, mode, prefix, ledger string) (*exec.Cmd, <-chan string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, addrEnv+"="+redistest.Addr(t),
		prefixEnv+"="+prefix, ledgerEnv+"="+ledger)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// await reads lines until one starts with want.
func await(t *testing.T, lines <-chan string, want string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "child ended before %q", want)
			if strings.HasPrefix(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q from the child", want)
		}
	}
}

// parent opens a store on prefix in this process, as one more instance.
func parent(t *testing.T, prefix string) (*idem.Store, *idem.Scope) {
	rdb := redistest.Client(t)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
	require.NoError(t, err)
	st, err := idem.Open(idem.Options{Backend: be, Lease: childLease, LeaseRenewal: childRenewal})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st, scope(t, st, idem.ScopeOptions{})
}

// TestProcessesRunEachKeyOnce has four processes ask for the same keys at
// the same time: each key's function runs once in all, and every process
// gets that one execution's result.
func TestProcessesRunEachKeyOnce(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Client(t))
	ledger := t.TempDir() + "/ledger"
	require.NoError(t, os.WriteFile(ledger, nil, 0o644))
	var children []*exec.Cmd
	var outputs []<-chan string
	for range 4 {
		cmd, lines := start(t, "storm", prefix, ledger)
		children = append(children, cmd)
		outputs = append(outputs, lines)
	}
	acks := map[string]map[string]int{} // key → value → acknowledgements
	for _, lines := range outputs {
		for l := range lines {
			f := strings.Fields(l)
			require.Len(t, f, 3, "child said %q", l)
			if acks[f[1]] == nil {
				acks[f[1]] = map[string]int{}
			}
			acks[f[1]][f[2]]++
		}
	}
	for _, cmd := range children {
		require.NoError(t, cmd.Wait())
	}
	b, err := os.ReadFile(ledger)
	require.NoError(t, err)
	execs := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		execs[strings.Fields(l)[1]]++
	}
	require.Len(t, execs, stormKeys)
	for key, n := range execs {
		assert.Equal(t, 1, n, "%s ran %d times", key, n)
		assert.Len(t, acks[key], 1, "%s: every process got the same result: %v", key, acks[key])
		for _, count := range acks[key] {
			assert.Equal(t, 4*8, count, "%s: acknowledged to every caller", key)
		}
	}
}

// TestKilledOwnerIsDetectedAfterItsLease kills an instance while its
// function runs; another instance waits for the lease to lapse and runs
// the key again (OrphanRerun).
func TestKilledOwnerIsDetectedAfterItsLease(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Client(t))
	cmd, lines := start(t, "hang", prefix, "")
	await(t, lines, "started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	_ = cmd.Wait()

	st, sc := parent(t, prefix)
	runs := 0
	res, err := sc.Do(context.Background(), "k", nil, func(context.Context) ([]byte, error) {
		runs++
		return []byte("rerun"), nil
	})
	took := time.Since(killed)
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, 1, runs)
	assert.Equal(t, uint64(1), st.Stats().Orphans, "taken over as an orphan")
	assert.Less(t, took, childLease+2*time.Second, "detected once the lease lapsed")
	t.Logf("orphan taken over %v after the kill (lease %v)", took, childLease)
}

// TestStoppedOwnerCannotComplete stops an instance (SIGSTOP) past its
// lease while its function runs; another instance takes the key over and
// completes it; once continued, the first instance's function is cancelled
// and its result refused.
func TestStoppedOwnerCannotComplete(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Client(t))
	cmd, lines := start(t, "pause", prefix, "")
	await(t, lines, "started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))

	_, sc := parent(t, prefix)
	res, err := sc.Do(context.Background(), "k", nil, func(context.Context) ([]byte, error) {
		return []byte("fresh"), nil
	})
	require.NoError(t, err, "the stopped owner's lease lapses and the key is taken over")
	assert.False(t, res.Replayed)

	require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
	assert.Contains(t, await(t, lines, "cancelled:"), idem.ErrLeaseLost.Error())
	assert.Contains(t, await(t, lines, "done:"), idem.ErrLeaseLost.Error())
	require.NoError(t, cmd.Wait())

	res, err = sc.Do(context.Background(), "k", nil, func(context.Context) ([]byte, error) {
		return []byte("third"), nil
	})
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "fresh", string(res.Value), "the stopped owner overwrote nothing")
}
