package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
)

// Workload names a key distribution.
type Workload string

// The workloads of the comparison (see docs/numbers.md): every claim a new key;
// 90% of claims on one of DupKeys existing keys; all claims on HotKeys keys.
const (
	Unique Workload = "unique"
	Dup90  Workload = "dup90"
	Hot    Workload = "hot"
)

// Workloads lists them in table order.
var Workloads = []Workload{Unique, Dup90, Hot}

const (
	KeyLen  = 32
	DupKeys = 100_000
	HotKeys = 16
)

// Keys generates a workload's keys. It is safe for concurrent use; each
// goroutine draws from its own *Stream.
type Keys struct {
	workload Workload
	prefix   string        // makes runs in one store distinct
	next     atomic.Uint64 // counter for new keys
	pool     []byte        // random bytes that values are cut from
}

// NewKeys prepares the keys of w; values are valueSize bytes.
func NewKeys(w Workload, valueSize int) (*Keys, error) {
	switch w {
	case Unique, Dup90, Hot:
	default:
		return nil, fmt.Errorf("bench: unknown workload %q", w)
	}
	if valueSize < 0 {
		return nil, fmt.Errorf("bench: negative value size")
	}
	pool := make([]byte, 16<<20+valueSize)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = rng.Read(pool)
	return &Keys{workload: w, prefix: fmt.Sprintf("%08x", rand.Uint32()), pool: pool}, nil
}

// Prefill claims the keys that dup90 and hot repeat, before timing.
func (k *Keys) Prefill(ctx context.Context, t Target, valueSize int) error {
	n := 0
	switch k.workload {
	case Dup90:
		n = DupKeys
	case Hot:
		n = HotKeys
	}
	// In parallel: a networked target takes one round trip per key.
	const workers = 16
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			s := k.Stream(uint64(w) + 1)
			for i := w; i < n; i += workers {
				if _, err := t.Claim(ctx, k.old(s.key[:0], i), s.value(valueSize)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var err error
	for range workers {
		err = errors.Join(err, <-errs)
	}
	return err
}

// Stream is one goroutine's view of the keys.
type Stream struct {
	k   *Keys
	rng *rand.Rand
	key []byte
}

// Stream returns a stream with its own random source.
func (k *Keys) Stream(seed uint64) *Stream {
	return &Stream{k: k, rng: rand.New(rand.NewPCG(seed, 0xbe9c)), key: make([]byte, 0, KeyLen)}
}

// Next returns the next key (valid until the next call) and a value.
func (s *Stream) Next(valueSize int) (key, value []byte) {
	k := s.k
	switch {
	case k.workload == Hot:
		key = k.old(s.key[:0], s.rng.IntN(HotKeys))
	case k.workload == Dup90 && s.rng.IntN(10) != 0:
		key = k.old(s.key[:0], s.rng.IntN(DupKeys))
	default:
		key = k.key(s.key[:0], "-new-", k.next.Add(1))
	}
	s.key = key
	return key, s.value(valueSize)
}

func (s *Stream) value(size int) []byte {
	off := s.rng.IntN(len(s.k.pool) - size + 1)
	return s.k.pool[off : off+size : off+size]
}

// old is the key of the i-th prefilled key, KeyLen bytes.
func (k *Keys) old(dst []byte, i int) []byte {
	return k.key(dst, "-old-", uint64(i))
}

// key appends prefix, kind and n (below 10^19) in 19 digits to dst:
// KeyLen bytes, built without fmt, whose formatting cost a third of a hot
// row's CPU (the harness's cost is every target's, and hides how far
// apart they are).
func (k *Keys) key(dst []byte, kind string, n uint64) []byte {
	dst = append(append(dst, k.prefix...), kind...)
	var digits [19]byte
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, digits[:]...)
}
