package idembadger

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idem/backend"
)

// DefaultMinFreeDisk is the free space below which a store stops taking
// new keys when Options.MinFreeDisk is zero.
const DefaultMinFreeDisk = 64 << 20

// diskGuard refuses writes before the store's directory can no longer
// take them, because Badger does not fail such writes gracefully:
//
//   - A full disk: Badger writes through memory-mapped files that it
//     extends sparsely, so on a full file system a write does not fail: the
//     process is killed by SIGBUS. The guard keeps a margin instead: new
//     claims stop at min free bytes plus half the store's own size,
//     completions and deletions (which let a collection free space) at half
//     of that. The store's share is room for compactions, which go on after
//     writes stop and write their new tables before they delete the old
//     ones (without it, a 96 MiB file system still filled up in one run of
//     TestFullDisk out of eight).
//   - A directory that cannot take a new file (read-only, deleted, no file
//     descriptors or inodes left): Badger creates a file for each new
//     memtable, and if that fails its next write exits the process. The
//     guard creates and removes a file of its own at each look, and while
//     that fails, writes get backend.ErrStorageFault.
//
// It looks at most every guardInterval, when a caller asks, on a goroutine
// of its own: a look creates and removes a file, which on a busy disk
// takes milliseconds that the caller would otherwise wait. Until a look
// ends, the last answer stands. A timer, not the callers, tells when the
// interval has passed: a caller reads a flag, not the clock (a clock read
// cost 66–90 ns here, twice per new key), and an idle store's timer fires
// once and then rests until a caller starts the next look.
type diskGuard struct {
	dir   string
	min   int64 // free bytes to keep; negative: space is not watched
	free  atomic.Int64
	used  atomic.Int64          // bytes the store takes
	fault atomic.Pointer[error] // why the directory cannot take a new file; nil: it can
	due   atomic.Bool           // guardInterval has passed since a look last started

	lookMu  sync.Mutex             // held by each look, also Reclaim's: one at a time
	mu      sync.Mutex             // guards stopped, interval, and the start of a look aside
	stopped bool                   // stop was called: no more looks start
	looks   sync.WaitGroup         // the looks allow started
	probe   func(dir string) error // probe; tests slow it down
	// interval sets due guardInterval after each look aside starts (and
	// after the first look).
	interval *time.Timer
}

// guardInterval is how often the directory is looked at at most.
const guardInterval = 50 * time.Millisecond

func newDiskGuard(opts Options) *diskGuard {
	if opts.InMemory || opts.ReadOnly {
		return nil
	}
	g := &diskGuard{dir: opts.Dir, min: opts.MinFreeDisk, probe: probe}
	if g.min == 0 {
		g.min = DefaultMinFreeDisk
	}
	if _, ok := freeSpace(opts.Dir); !ok {
		g.min = -1 // cannot be told here
	}
	g.look() // concurrent first calls must never see an unread 0
	g.interval = time.AfterFunc(guardInterval, func() { g.due.Store(true) })
	return g
}

// look reads the free space and the store's size, and tries to create a
// file.
func (g *diskGuard) look() {
	g.lookMu.Lock()
	defer g.lookMu.Unlock()
	g.lookHeld()
}

// lookHeld is look, for the holder of lookMu.
func (g *diskGuard) lookHeld() {
	if g.min >= 0 {
		if free, ok := freeSpace(g.dir); ok {
			g.free.Store(free)
		}
		g.used.Store(dirSize(g.dir))
	}
	if err := g.probe(g.dir); err != nil {
		g.fault.Store(&err)
	} else {
		g.fault.Store(nil)
	}
}

// probe creates a file in dir and removes it again.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, ".idem-probe-*")
	if err != nil {
		return err
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// faulty reports whether the directory could not take a file at the last
// look.
func (g *diskGuard) faulty() bool { return g != nil && g.fault.Load() != nil }

// allow returns backend.ErrStorageFault while the directory cannot take a new
// file, and backend.ErrDiskFull when less than the margin is free: min plus half
// the store's size for a new claim (claim), half of that for anything
// else.
func (g *diskGuard) allow(claim bool) error {
	if g == nil {
		return nil
	}
	if g.due.Load() && g.due.CompareAndSwap(true, false) {
		g.lookAside()
	}
	if err := g.fault.Load(); err != nil {
		return fmt.Errorf("%w: %s: %w", backend.ErrStorageFault, g.dir, *err)
	}
	if g.min < 0 {
		return nil
	}
	need := g.min + g.used.Load()/2
	if !claim {
		need /= 2
	}
	if free := g.free.Load(); free < need {
		return fmt.Errorf("%w: %d bytes free in %s, %d needed", backend.ErrDiskFull, free, g.dir, need)
	}
	return nil
}

// lookAside starts a look on a goroutine of its own, unless one is running
// (a look can outlast guardInterval on a slow disk) or the guard stopped.
// The lock it takes for the look is released by that goroutine.
func (g *diskGuard) lookAside() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.interval.Reset(guardInterval)
	if !g.lookMu.TryLock() {
		return
	}
	g.looks.Go(func() {
		defer g.lookMu.Unlock()
		g.lookHeld()
	})
}

// stop waits for a running look and starts no more, so that none creates
// a file in the directory once the store is closed.
func (g *diskGuard) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.stopped = true
	g.interval.Stop()
	g.mu.Unlock()
	g.looks.Wait()
}

// AllowWrite implements [backend.WriteGuard]: see diskGuard.allow. An
// in-memory or read-only store allows everything (a read-only one refuses
// writes itself).
func (b *Backend) AllowWrite(newKey bool) error { return b.guard.allow(newKey) }

// dirSize sums the allocated sizes of the regular files in dir.
func dirSize(dir string) int64 {
	var total int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		total += allocated(info)
	}
	return total
}
