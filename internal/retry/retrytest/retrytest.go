// Package retrytest holds what the tests of both retrying clients
// (idemhttp's Transport, idemgrpc's client interceptor) share.
package retrytest

import (
	"fmt"
	"sync"
	"testing"
)

// SendAll makes n logical calls from 4 goroutines, the i-th with argument
// prefix followed by i, and returns what each call answered ("" where it
// failed, which is reported as a test error).
func SendAll(t testing.TB, n int, prefix string, send func(arg string) (string, error)) map[string]string {
	t.Helper()
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	args := make(chan string)
	for range 4 {
		wg.Go(func() {
			for arg := range args {
				answer, err := send(arg)
				if err != nil {
					t.Errorf("%s: %v", arg, err)
				}
				mu.Lock()
				got[arg] = answer
				mu.Unlock()
			}
		})
	}
	for i := range n {
		args <- fmt.Sprint(prefix, i)
	}
	close(args)
	wg.Wait()
	return got
}
