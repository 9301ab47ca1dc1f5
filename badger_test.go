package idem

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldClaims counts the holds of the Badger backend.
func (b *badgerBackend) heldClaims() int {
	n := 0
	for i := range b.holds.stripes {
		s := &b.holds.stripes[i]
		s.mu.Lock()
		n += len(s.held)
		s.mu.Unlock()
	}
	return n
}

// TestSlowWorkKeepsItsClaim runs work far longer than the lease and every
// retention on the default backend: the claim lives as long as the work,
// so its result is stored and replayed, and nothing runs twice.
func TestSlowWorkKeepsItsClaim(t *testing.T) {
	ctx := testCtx(t)
	for _, policy := range []OrphanPolicy{OrphanRerun, OrphanReport} {
		t.Run(policy.String(), func(t *testing.T) {
			st := openTest(t, Options{Lease: 20 * time.Millisecond, LeaseRenewal: 10 * time.Millisecond})
			sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Hour, OrphanTTL: 50 * time.Millisecond, Orphans: policy})
			runs := 0
			res, err := sc.Do(ctx, "slow", nil, func(context.Context) ([]byte, error) {
				runs++
				time.Sleep(300 * time.Millisecond) // past the lease and the OrphanTTL
				return []byte("done"), nil
			})
			require.NoError(t, err, "a slow call keeps its claim")
			assert.False(t, res.Replayed)
			res, err = sc.Do(ctx, "slow", nil, value(&runs, "again"))
			require.NoError(t, err)
			assert.True(t, res.Replayed)
			assert.Equal(t, "done", string(res.Value))
			assert.Equal(t, 1, runs)
		})
	}
}

// TestAbandonedClaimsLeaveNothingInMemory fails many completions: each
// claim is abandoned (an orphan under OrphanReport, a new key under
// OrphanRerun), counted in Stats.Abandoned, and no hold stays behind.
func TestAbandonedClaimsLeaveNothingInMemory(t *testing.T) {
	ctx := testCtx(t)
	for _, policy := range []OrphanPolicy{OrphanRerun, OrphanReport} {
		t.Run(policy.String(), func(t *testing.T) {
			st, sc, fb := openFaulty(t, policy)
			const n = 1000
			for i := range n {
				_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, func(context.Context) ([]byte, error) {
					fb.set3(0, 1, 0) // the claim went through: fail the completion
					return []byte("lost"), nil
				})
				require.ErrorIs(t, err, errInjected)
			}
			fb.set3(0, 0, 0)
			assert.Zero(t, st.local.heldClaims(), "abandoned claims are not kept in memory")
			assert.Equal(t, uint64(n), st.Stats().Abandoned)
			assert.Zero(t, st.Stats().InFlight)
			runs := 0
			_, err := sc.Do(ctx, "k0", nil, value(&runs, "again"))
			if policy == OrphanReport {
				assert.ErrorIs(t, err, ErrOutcomeUnknown, "the work ran once; its outcome is unknown")
				assert.Zero(t, runs)
			} else {
				assert.NoError(t, err)
				assert.Equal(t, 1, runs, "OrphanRerun runs it again, as after a crash")
			}
		})
	}
}
