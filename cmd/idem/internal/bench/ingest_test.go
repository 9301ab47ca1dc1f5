package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIngestWritesEveryKey: the group commit stores every write of its
// concurrent callers, and each caller returns once its write is stored.
func TestIngestWritesEveryKey(t *testing.T) {
	tg, err := Open(BadgerIngest, Env{Dir: t.TempDir()})
	require.NoError(t, err)
	it := tg.(*ingestTarget)
	defer it.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Appendf(nil, "k-%d-%d", g, i)
				claimed, err := it.Claim(context.Background(), key, []byte("v"))
				assert.NoError(t, err)
				assert.True(t, claimed)
				assert.NoError(t, it.db.View(func(txn *badger.Txn) error {
					_, err := txn.Get(key)
					return err
				}), "stored when Claim returned")
			}
		})
	}
	wg.Wait()
}
