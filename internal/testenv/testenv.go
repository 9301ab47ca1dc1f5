// Package testenv says which tests run — the long ones (soak, crash and
// fault loops, the full model test) only when IDEM_LONG is set, as CI
// does, so that the plain test command stays under a minute — and gives
// tests the load they run under (busy.go).
package testenv

import (
	"os"
	"testing"
)

// LongEnv is the environment variable that turns the long tests on.
const LongEnv = "IDEM_LONG"

// IsLong reports whether the long tests run: IDEM_LONG is set, and the
// tests do not run with -short.
func IsLong() bool { return os.Getenv(LongEnv) != "" && !testing.Short() }

// Long skips t unless the long tests run; why says what makes it long.
func Long(t testing.TB, why string) {
	t.Helper()
	if !IsLong() {
		t.Skipf("%s: set %s=1 to run it", why, LongEnv)
	}
}
