package idem_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/internal/redistest"
)

// The model test also runs the store on Redis: every answer must be the
// same as on Badger and in the reference model.
func init() {
	idem.RegisterModelBackend("redis", func(t testing.TB) func() idem.Backend {
		rdb := redistest.Client(t)
		prefix := redistest.Prefix(t, rdb)
		return func() idem.Backend {
			be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
			require.NoError(t, err)
			return be
		}
	})
}
