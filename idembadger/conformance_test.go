package idembadger_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/backendtest"
)

func TestBadgerConformance(t *testing.T) {
	for name, inMemory := range map[string]bool{"disk": false, "memory": true} {
		t.Run(name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) idem.Backend {
				opts := idem.Options{InMemory: inMemory}
				if !inMemory {
					opts.Dir = t.TempDir()
				}
				be, err := idem.OpenBadger(opts)
				require.NoError(t, err)
				return be
			})
		})
	}
}
