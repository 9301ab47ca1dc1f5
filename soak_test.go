package idem

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idem/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// soakChildEnv marks the child process that runs the soak itself.
const soakChildEnv = "IDEM_SOAK_CHILD"

// TestSoak runs mixed load for minutes (IDEM_SOAK sets how long; 2m by
// default) — new keys, replays, plain and permanent failures, panics,
// expiries on a fast clock, collections — and checks that goroutines and
// live heap stay flat once warmed up. It runs in a child process of its
// own, so that goroutines and heap that earlier tests leave behind (or
// that wind down while it runs) do not move its baseline.
func TestSoak(t *testing.T) {
	testenv.Long(t, "runs for minutes")
	if os.Getenv(soakChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSoak$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), soakChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		require.NoError(t, err, "the soak failed in its child process")
		return
	}
	length := 2 * time.Minute
	if v := os.Getenv("IDEM_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		length = d
	}
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: 200 * time.Millisecond})
	sc := scopeTest(t, st, "soak", ScopeOptions{TTL: 2 * time.Second, FailureTTL: time.Second, MaxKeys: 50_000})
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // time runs 10x fast, so records keep expiring
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				clock.Advance(100 * time.Millisecond)
			}
		}
	})
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprint("k", rng.IntN(20_000))
				kind := rng.IntN(20)
				func() {
					defer func() { _ = recover() }()
					_, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
						switch kind {
						case 0:
							return nil, errors.New("transient")
						case 1:
							return nil, Permanent(errors.New("declined"))
						case 2:
							panic("boom")
						}
						return make([]byte, 64+rng.IntN(512)), nil
					})
					if err != nil && !errors.Is(err, ErrPermanent) && !errors.Is(err, ErrScopeFull) && err.Error() != "transient" {
						t.Errorf("unexpected: %v", err)
					}
				}()
			}
		})
	}
	sample := func() (int, uint64) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapInuse
	}
	// The baseline is taken once the store is warm (its key space, replay
	// cache and filter filled: 400,000 claims), at a quarter of the run
	// at the earliest and half at the latest: on a loaded machine the
	// warm-up takes longer, and a baseline taken before it ends reads as
	// growth.
	start := time.Now()
	time.Sleep(length / 4)
	for time.Since(start) < length/2 && st.Stats().Claims < 400_000 {
		time.Sleep(100 * time.Millisecond)
	}
	g1, h1 := sample()
	time.Sleep(length - time.Since(start))
	g2, h2 := sample()
	close(stop)
	wg.Wait()
	s := st.Stats()
	t.Logf("goroutines %d -> %d, heap in use %d -> %d MiB; %d claims, %d replays, %d collections reclaimed %d records",
		g1, g2, h1>>20, h2>>20, s.Claims, s.Replays, s.Collections, s.Reclaimed)
	assert.LessOrEqual(t, g2, g1+4, "goroutines stay flat")
	assert.Less(t, float64(h2), float64(h1)*1.5+float64(16<<20), "live heap stays flat")
	assert.Positive(t, s.Reclaimed, "records expired and were collected")
}
