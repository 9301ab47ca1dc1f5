package idem

import "testing"

// RegisterModelBackend adds a backend to TestModel, from a test file of
// package idem_test, which can import the packages that import idem.
func RegisterModelBackend(name string, open func(testing.TB) func() Backend) {
	modelBackends = append(modelBackends, modelBackend{name, open})
}
