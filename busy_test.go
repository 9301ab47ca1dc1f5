package idem

import (
	"context"
	"fmt"
	"testing"

	"github.com/idemkit/idem/internal/testenv"
)

// TestCommitsDoNotWaitBehindBusyGoroutines stores new keys one by one
// while CPU-bound goroutines fill every processor: a commit must not wait
// for the scheduler to come round to it behind them. (A committer that
// yielded the processor before committing took 20-80 ms a call on 2
// cores, against 20 µs.)
func TestCommitsDoNotWaitBehindBusyGoroutines(t *testing.T) {
	sc := scopeTest(t, openTest(t, Options{}), "busy", ScopeOptions{Orphans: OrphanReport}) // claims are written too
	testenv.KeepsPaceWhenBusy(t, func(i int) error {
		_, err := sc.Do(context.Background(), fmt.Sprint("k", i), nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
		return err
	})
}
