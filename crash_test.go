package idem

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const crashDirEnv = "IDEM_CRASH_CHILD_DIR"

var crashScopes = map[string]ScopeOptions{
	"report": {Orphans: OrphanReport},
	"rerun":  {Orphans: OrphanRerun},
}

// TestCrashChild is the child process of TestCrash; run on its own it
// returns at once. It claims "inflight" in both scopes with a function that
// never returns, then completes key after key, printing each one it was
// acknowledged, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	st, err := Open(Options{Dir: dir, SyncWrites: os.Getenv("IDEM_CRASH_SYNC") == "1"})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	for name, o := range crashScopes {
		sc, err := st.Scope(name, o)
		if err != nil {
			fmt.Println("scope:", err)
			os.Exit(1)
		}
		go sc.Do(ctx, "inflight", []byte("fp"), func(context.Context) ([]byte, error) {
			fmt.Println("running", name)
			select {} // the process dies here
		})
	}
	sc, _ := st.Scope("rerun", crashScopes["rerun"])
	for i := 0; ; i++ {
		key := fmt.Sprint("done-", i)
		if _, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
			return []byte("value-" + strconv.Itoa(i)), nil
		}); err != nil {
			fmt.Println("do:", err)
			os.Exit(1)
		}
		fmt.Println("acked", i)
	}
}

// TestCrash kills a child process with SIGKILL while it runs functions and
// stores results, then reopens its store: every acknowledged result is
// there, and each orphan policy does what it says with the key that was
// mid-function.
func TestCrash(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			dir := t.TempDir()
			acked := runCrashChild(t, dir, sync)
			require.Greater(t, acked, 0)

			ctx := testCtx(t)
			st := openTest(t, Options{Dir: dir})
			report := scopeTest(t, st, "report", crashScopes["report"])
			rerun := scopeTest(t, st, "rerun", crashScopes["rerun"])
			for i := range acked {
				res, err := rerun.Do(ctx, fmt.Sprint("done-", i), nil, func(context.Context) ([]byte, error) {
					return nil, fmt.Errorf("acknowledged key %d ran again", i)
				})
				require.NoError(t, err, "key %d", i)
				require.True(t, res.Replayed)
				require.Equal(t, fmt.Sprint("value-", i), string(res.Value))
			}

			runs := 0
			_, err := report.Do(ctx, "inflight", []byte("fp"), value(&runs, "again"))
			assert.ErrorIs(t, err, ErrOutcomeUnknown)
			res, err := rerun.Do(ctx, "inflight", []byte("fp"), value(&runs, "again"))
			require.NoError(t, err)
			assert.False(t, res.Replayed)
			assert.Equal(t, 1, runs, "only the rerun scope runs the orphan again")
		})
	}
}

// runCrashChild starts TestCrashChild on dir, kills it once both functions
// are running and a random number of results were acknowledged, and
// returns how many were acknowledged before it died.
func runCrashChild(t *testing.T, dir string, sync bool) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	if sync {
		cmd.Env = append(cmd.Env, "IDEM_CRASH_SYNC=1")
	}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	target := 50 + rand.IntN(400)
	running, acked, killed := 0, 0, false
	lines := bufio.NewScanner(out)
	deadline := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		line := lines.Text()
		switch {
		case strings.HasPrefix(line, "running "):
			running++
		case strings.HasPrefix(line, "acked "):
			n, err := strconv.Atoi(strings.TrimPrefix(line, "acked "))
			require.NoError(t, err)
			acked = n + 1
		default:
			t.Fatalf("child: %s", line)
		}
		if running == 2 && acked >= target && !killed {
			_, err := Open(Options{Dir: dir})
			require.ErrorIs(t, err, ErrLocked, "the live child holds the directory")
			require.ErrorContains(t, err, fmt.Sprintf("held by pid %d", cmd.Process.Pid))
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true // and read on: what it printed before dying was acknowledged too
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child must die of the signal")
	require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())
	return acked
}
