package idembadger

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
)

// presence knows which keys may be stored in Badger, so that the claim of
// a new key — the common case — skips the read that would find nothing (a
// read looks through Badger's memtables and a table of each level). It is
// a Bloom filter: a key it may hold is read to be sure, a key it does not
// hold is not stored.
//
// Why nothing stored is missed: every record is written while its key is
// held (see holds), and the writer adds the key once its commit has
// returned, before the hold ends (or its claim added it already, to the
// filters still in use: see check); a claim consults the filter under the
// hold's lock, and only when no hold is left. The keys stored before Open
// are added by a scan, which runs in the background; until it has ended,
// every claim reads.
//
// Deleted keys stay in the filter until it is refilled, and a filter that
// holds more keys than it was sized for answers "maybe" more often: once
// it does, a new filter, at least twice as large, is filled by a fresh
// scan while writers add to both, and then replaces it. The scan begins
// after the new filter was installed and sees every commit that returned
// before it began; a writer whose commit it may not see adds its key
// after the commit returns, to the new filter too.
type presence struct {
	b       *Backend // whose Badger it scans
	minKeys int      // the least number of keys a filter is sized for
	filters atomic.Pointer[filterSet]
	closed  atomic.Bool // a scan stops early once set

	mu      sync.Mutex // orders starting scans with stop
	stopped bool
	scans   sync.WaitGroup
}

// filterSet is the filter in use (nil until the first scan has ended) and
// the one a scan is filling.
type filterSet struct {
	cur, next *bloom
}

// defaultFilterKeys is the least number of keys a filter is sized for
// when Options.FilterKeys is zero: 1<<20 keys take 2 MiB.
const defaultFilterKeys = 1 << 20

// start fills the first filter, sized for at least minKeys keys (0:
// defaultFilterKeys), in the background.
func (p *presence) start(b *Backend, minKeys int) {
	p.b, p.minKeys = b, minKeys
	if p.minKeys == 0 {
		p.minKeys = defaultFilterKeys
	}
	p.filters.Store(&filterSet{})
	p.refresh()
}

// check reports whether key may be stored (false only if it is not), for
// a claim that takes key if it is not: such a key is added at once, while
// its block is in the processor's cache, and check returns the filters it
// went into (nil: none), which the claim's writes give to add. full says
// that the filter now holds more keys than it was sized for: the caller
// calls refresh once it holds no lock (a refresh allocates the next filter
// and asks Badger for its size).
func (p *presence) check(key []byte) (may bool, in *filterSet, full bool) {
	f := p.filters.Load()
	if f == nil || f.cur == nil {
		return true, nil, false
	}
	added, full := f.cur.add(key)
	if !added { // every bit was set: it may be stored
		return true, nil, false
	}
	if f.next != nil {
		f.next.add(key)
	}
	return false, f, full
}

// add records that key is stored, or may be: a commit that wrote it has
// returned, with or without an error. A key that check put in the filters
// still in use (in) is in them already. (Filters put in use since hold it
// too: a refresh scans after it installed the new filter, and the scan
// sees every commit that returned before it began.)
func (p *presence) add(key []byte, in *filterSet) {
	f := p.filters.Load()
	if f == nil || f == in {
		return // not in use (read-only), or added by check
	}
	full := false
	if f.cur != nil {
		_, full = f.cur.add(key)
	}
	if f.next != nil {
		f.next.add(key)
	}
	if full {
		p.refresh()
	}
}

// refresh starts a scan unless one runs already.
func (p *presence) refresh() {
	if p.filters.Load().next != nil {
		return // the common case while a scan runs
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.filters.Load()
	if f.next != nil || p.stopped {
		return
	}
	keys := max(p.minKeys, 2*p.b.storedKeys())
	if f.cur != nil {
		keys = max(keys, 2*int(f.cur.keys)) // grow: never refill over and over
	}
	p.filters.Store(&filterSet{cur: f.cur, next: newBloom(keys)})
	p.scans.Go(p.refill)
}

// refill adds every stored key to the next filter, then puts it in use.
// Should the scan fail, the filter in use stays (a later addition beyond
// its capacity tries again).
func (p *presence) refill() {
	next := p.filters.Load().next
	err := p.b.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if p.closed.Load() {
				return badger.ErrDBClosed
			}
			next.add(it.Item().Key())
		}
		return nil
	})
	f := p.filters.Load()
	if err != nil {
		p.filters.Store(&filterSet{cur: f.cur})
		return
	}
	p.filters.Store(&filterSet{cur: next})
}

// stop ends a running scan early and waits for it; no scan starts after.
func (p *presence) stop() {
	p.closed.Store(true)
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.scans.Wait()
}

// storedKeys is Badger's count of the keys in its tables (versions and
// deletions included; the memtables' are not), or 0 if Badger has failed.
func (b *Backend) storedKeys() int {
	n := 0
	_ = b.engine(func(db *badger.DB, _ *committer) error {
		for _, t := range db.Tables() {
			n += int(t.KeyCount)
		}
		return nil
	})
	return n
}

// bloom is a blocked Bloom filter with about 10 to 20 bits per key of its
// capacity: a key's 7 bits lie in one 64-byte block, so that adding or
// testing a key touches one cache line, not seven (at a million keys the
// filter is far larger than the processor's caches, and the misses were
// most of its cost). About 1% false positives at capacity. It is safe
// for concurrent use.
type bloom struct {
	words []atomic.Uint64
	shift uint // 64 - log2(blocks): a hash's top bits pick its block
	added atomic.Int64
	keys  int64 // capacity
}

const (
	bloomProbes     = 7
	bloomBlockWords = 8 // 512 bits, one cache line
)

func newBloom(keys int) *bloom {
	n := uint64(1) << bits.Len64(uint64(keys)*10-1) // bits, a power of two
	blocks := max(n/(64*bloomBlockWords), 1)
	return &bloom{
		words: make([]atomic.Uint64, blocks*bloomBlockWords),
		shift: uint(64 - bits.TrailingZeros64(blocks)),
		keys:  int64(keys),
	}
}

// probes returns key's block and the word and bit of each of its probes
// in the block, 9 bits of hash each.
func (f *bloom) probes(key []byte) (block []atomic.Uint64, bitsOf uint64) {
	h := xxhash.Sum64(key)
	b := uint64(0)
	if f.shift < 64 {
		b = h >> f.shift
	}
	// The probes come from all of h, mixed, not from the bits that chose
	// the block, which are alike for every key in it.
	return f.words[b*bloomBlockWords : (b+1)*bloomBlockWords], h * 0x9e3779b97f4a7c15
}

// add sets key's bits and reports whether any was not set before (added)
// and whether the filter holds more keys than it was sized for (full).
func (f *bloom) add(key []byte) (added, full bool) {
	block, p := f.probes(key)
	for range bloomProbes {
		w, m := &block[p>>6&7], uint64(1)<<(p&63)
		if w.Load()&m == 0 {
			w.Or(m)
			added = true
		}
		p >>= 9
	}
	return added, added && f.added.Add(1) > f.keys
}
