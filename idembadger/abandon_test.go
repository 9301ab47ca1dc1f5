package idembadger_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idembadger"
)

var errInjected = errors.New("injected: completion failed")

// failingCompletions is the Badger backend with completions that fail
// while fail is set. It stays Exclusive, as the backend is.
type failingCompletions struct {
	*idembadger.Backend
	fail atomic.Bool
}

func (f *failingCompletions) Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	if f.fail.Load() {
		return errInjected
	}
	return f.Backend.Complete(ctx, key, owner, value, ttl)
}

// TestAbandonedClaimsLeaveNothingInMemory fails many completions: each
// claim is abandoned (an orphan under OrphanReport, a new key under
// OrphanRerun), counted in Stats.Abandoned, and no hold stays behind.
func TestAbandonedClaimsLeaveNothingInMemory(t *testing.T) {
	ctx := context.Background()
	for _, policy := range []idem.OrphanPolicy{idem.OrphanRerun, idem.OrphanReport} {
		t.Run(policy.String(), func(t *testing.T) {
			b, err := idembadger.Open(idembadger.Options{Dir: t.TempDir()})
			require.NoError(t, err)
			fb := &failingCompletions{Backend: b}
			st, err := idem.Open(idem.Options{Backend: fb, CacheBytes: -1, GCInterval: -1})
			require.NoError(t, err)
			defer st.Close()
			sc, err := st.Scope("s", idem.ScopeOptions{Orphans: policy})
			require.NoError(t, err)
			const n = 1000
			for i := range n {
				_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, func(context.Context) ([]byte, error) {
					fb.fail.Store(true) // the claim went through: fail the completion
					return []byte("lost"), nil
				})
				fb.fail.Store(false)
				require.ErrorIs(t, err, errInjected)
			}
			assert.Zero(t, idembadger.HeldClaims(b), "abandoned claims are not kept in memory")
			assert.Equal(t, uint64(n), st.Stats().Abandoned)
			assert.Zero(t, st.Stats().InFlight)
			runs := 0
			_, err = sc.Do(ctx, "k0", nil, func(context.Context) ([]byte, error) { runs++; return []byte("again"), nil })
			if policy == idem.OrphanReport {
				assert.ErrorIs(t, err, idem.ErrOutcomeUnknown, "the work ran once; its outcome is unknown")
				assert.Zero(t, runs)
			} else {
				assert.NoError(t, err)
				assert.Equal(t, 1, runs, "OrphanRerun runs it again, as after a crash")
			}
		})
	}
}
