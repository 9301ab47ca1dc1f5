package idemprom_test

import (
	"testing"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemprom"
	"github.com/idemkit/idem/internal/replaybench"
)

// BenchmarkReplay compares a cached replay without an observer and with
// the Prometheus Collector, in one run.
//
//	go test -run '^$' -bench Replay -count 5 ./idemprom
func BenchmarkReplay(b *testing.B) {
	for _, observed := range []bool{false, true} {
		name := "none"
		opts := idem.Options{InMemory: true, GCInterval: -1}
		if observed {
			name, opts.Observer = "prometheus", idemprom.New()
		}
		b.Run(name, func(b *testing.B) { replaybench.Run(b, opts) })
	}
}
