package idemredis_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/backendtest"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/internal/redistest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		child() // a process of the multi-process tests
		return
	}
	code := m.Run()
	redistest.Stop()
	os.Exit(code)
}

// newBackend returns a backend on the test server with keys of t's own.
func newBackend(t *testing.T) *idemredis.Backend {
	rdb := redistest.Client(t)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: redistest.Prefix(t, rdb)})
	require.NoError(t, err)
	return be
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) idem.Backend { return newBackend(t) })
}

func TestPrefixWithBraceIsRefused(t *testing.T) {
	_, err := idemredis.New(nil, idemredis.Options{Prefix: "a{b}:"})
	require.ErrorIs(t, err, idem.ErrInvalidOptions)
}
