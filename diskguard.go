package idem

import (
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultMinFreeDisk is the free space below which a store stops taking
// new keys when Options.MinFreeDisk is zero.
const DefaultMinFreeDisk = 64 << 20

// diskGuard refuses writes before the disk fills up. Badger writes through
// memory-mapped files that it extends sparsely, so on a full file system a
// write does not fail: the process is killed by SIGBUS. The guard keeps a
// margin instead: new claims stop at min free bytes plus half the store's
// own size, completions and deletions (which let a collection free space)
// at half of that. The store's share is room for compactions, which go on
// after writes stop and write their new tables before they delete the old
// ones (without it, a 96 MiB file system still filled up in one run of
// TestFullDisk out of eight).
type diskGuard struct {
	dir     string
	min     int64
	checked atomic.Int64 // when free and used were last read, Unix nanoseconds
	free    atomic.Int64
	used    atomic.Int64 // bytes the store takes
}

// guardInterval is how often the free space is read at most.
const guardInterval = 50 * time.Millisecond

func newDiskGuard(opts Options) *diskGuard {
	if opts.InMemory || opts.ReadOnly || opts.MinFreeDisk < 0 {
		return nil
	}
	free, ok := freeSpace(opts.Dir)
	if !ok {
		return nil
	}
	min := opts.MinFreeDisk
	if min == 0 {
		min = DefaultMinFreeDisk
	}
	g := &diskGuard{dir: opts.Dir, min: min}
	g.free.Store(free) // concurrent first calls must never see an unread 0
	g.used.Store(dirSize(opts.Dir))
	g.checked.Store(time.Now().UnixNano())
	return g
}

// allow returns ErrDiskFull when less than the margin is free: min plus
// half the store's size for a new claim (claim), half of that for anything
// else.
func (g *diskGuard) allow(claim bool) error {
	if g == nil {
		return nil
	}
	now := time.Now().UnixNano()
	if last := g.checked.Load(); now-last > int64(guardInterval) && g.checked.CompareAndSwap(last, now) {
		if free, ok := freeSpace(g.dir); ok {
			g.free.Store(free)
		}
		g.used.Store(dirSize(g.dir))
	}
	need := g.min + g.used.Load()/2
	if !claim {
		need /= 2
	}
	if free := g.free.Load(); free < need {
		return fmt.Errorf("%w: %d bytes free in %s, %d needed", ErrDiskFull, free, g.dir, need)
	}
	return nil
}
