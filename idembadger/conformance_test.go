package idembadger_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/backendtest"
	"github.com/idemkit/idem/idembadger"
)

func TestBadgerConformance(t *testing.T) {
	for name, inMemory := range map[string]bool{"disk": false, "memory": true} {
		t.Run(name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				opts := idembadger.Options{InMemory: inMemory}
				if !inMemory {
					opts.Dir = t.TempDir()
				}
				be, err := idembadger.Open(opts)
				require.NoError(t, err)
				return be
			})
		})
	}
}

// TestModel runs the store on Badger against the reference model; with a
// filter of stored keys sized for two keys too, which is refilled over
// and over while the store runs, reopens and collects: no answer changes.
func TestModel(t *testing.T) {
	for name, filterKeys := range map[string]int{"default": 0, "tiny-filter": 2} {
		t.Run(name, func(t *testing.T) {
			backendtest.RunModel(t, func(tb testing.TB) func() backend.Backend {
				dir := tb.TempDir()
				return func() backend.Backend {
					b, err := idembadger.Open(idembadger.Options{Dir: dir, FilterKeys: filterKeys})
					require.NoError(tb, err)
					return b
				}
			})
		})
	}
}
