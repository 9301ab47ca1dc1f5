package idem

import (
	"testing"
	"time"
)

// OpenWithProcessClock is Open in a process whose own clock is wall, as
// if the machine's clock were set differently.
func OpenWithProcessClock(opts Options, wall func() time.Time) (*Store, error) {
	return open(opts, wall)
}

// RegisterModelBackend adds a backend to TestModel, from a test file of
// package idem_test, which can import the packages that import idem.
func RegisterModelBackend(name string, open func(testing.TB) func() Backend) {
	modelBackends = append(modelBackends, modelBackend{name, open})
}
