package idem

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/internal/testenv"
)

// TestCommitsDoNotWaitBehindBusyGoroutines stores new keys one by one
// while CPU-bound goroutines fill every processor: a commit must not wait
// for the scheduler to come round to it behind them. (A committer that
// yielded the processor before committing took 20-80 ms a call on 2
// cores, against 20 µs.)
func TestCommitsDoNotWaitBehindBusyGoroutines(t *testing.T) {
	sc := scopeTest(t, openTest(t, Options{}), "busy", ScopeOptions{Orphans: OrphanReport}) // claims are written too
	testenv.BusyProcessors(t)
	median := testenv.MedianLatency(100, func(i int) {
		_, err := sc.Do(context.Background(), fmt.Sprint("k", i), nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
		require.NoError(t, err)
	})
	t.Logf("median new key, every processor busy: %v", median)
	assert.Less(t, median, 10*time.Millisecond)
}
