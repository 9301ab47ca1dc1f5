package idembadger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/idemkit/idem/backend"
)

// Backend is the Badger engine: a [backend.Backend] in a directory (or in
// memory) that one process uses at a time. Besides the contract it has
// every optional capability the store looks for: [backend.Exclusive],
// [backend.Sweeper], [backend.Reclaimer], [backend.DiskUser],
// [backend.WriteGuard] and [backend.ValueLimit]. It is safe for concurrent
// use.
type Backend struct {
	// mu guards db and commits: held shared by every use of them (see
	// engine), and exclusively while a failed Badger is reopened (mend).
	mu       sync.RWMutex
	db       *badger.DB
	commits  *committer
	fault    atomic.Pointer[error] // why Badger failed and must be reopened; nil: healthy
	bo       badger.Options        // how db was opened, to open it again
	log      *slog.Logger
	closing  chan struct{}  // closed by close: mend stops
	mending  sync.WaitGroup // mend, while it runs
	dir      string
	dirInfo  os.FileInfo // dir as opened: mend reopens Badger only there
	inMemory bool
	copyDir  string     // a private copy opened instead of dir, removed by close
	guard    *diskGuard // nil: in memory, or read-only

	epoch uint64        // this Open's number, counting from 1 (read-only: the last one)
	seq   atomic.Uint64 // claims made in this epoch, for owner tokens
	holds holds
	keys  presence // which keys may be stored (not used read-only)

	unflushedDeletes atomic.Bool // DeleteAll ran since Reclaim last flushed the memtables
}

// checkOptions validates opts.
func checkOptions(opts Options) error {
	switch {
	case opts.InMemory && opts.Dir != "":
		return invalid("Dir must be empty with InMemory")
	case !opts.InMemory && opts.Dir == "":
		return invalid("Dir is required (or set InMemory, or Backend)")
	case opts.InMemory && opts.ReadOnly:
		return invalid("an in-memory store cannot be read-only")
	case opts.FilterKeys < 0:
		return invalid("negative FilterKeys")
	}
	return nil
}

// Open opens (or creates) the Badger store described by opts, starting a
// new epoch (read-only: reading the last one). Like its directory, it
// serves one idem.Store at a time.
func Open(opts Options) (*Backend, error) {
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	bo := badgerOptions(opts)
	var (
		db  *badger.DB
		err = errEmptyValueLog
	)
	if !opts.ReadOnly || !hasEmptyValueLog(opts.Dir) {
		db, err = openDB(bo)
	}
	var copyDir string
	if err != nil && opts.ReadOnly && needsWritableOpen(err) {
		// Killed mid-write: Badger must replay and truncate its log, or
		// set up a log file it was creating, or one it emptied but could
		// not remove, which a read-only open may not do. Do it on a
		// private copy.
		copyDir, err = copyStore(opts.Dir)
		if err == nil {
			bo = bo.WithDir(copyDir).WithValueDir(copyDir).WithReadOnly(false)
			db, err = openDB(bo)
			if err != nil {
				_ = os.RemoveAll(copyDir)
			}
		}
	}
	if err != nil {
		// Badger formats its lock error with %+v, so the cause cannot be
		// matched with errors.Is; its text is stable.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%w: %s%s", backend.ErrLocked, opts.Dir, lockHolder(opts.Dir))
		}
		return nil, fmt.Errorf("idem: open %s: %w", opts.Dir, err)
	}
	dir := opts.Dir
	if copyDir != "" {
		dir = copyDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{db: db, bo: bo, log: log, closing: make(chan struct{}), dir: dir, inMemory: opts.InMemory, copyDir: copyDir}
	b.commits = newCommitter(db, b.fail)
	if !opts.InMemory {
		if b.dirInfo, err = os.Stat(dir); err != nil {
			return nil, errors.Join(err, b.close())
		}
	}
	b.holds.init()
	if opts.ReadOnly {
		b.epoch, err = b.currentEpoch()
	} else {
		b.epoch, err = b.nextEpoch()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("idem: epoch: %w", err), b.close())
	}
	if !opts.ReadOnly {
		b.keys.start(b, opts.FilterKeys)
		b.guard = newDiskGuard(opts)
	}
	return b, nil
}

// epochKey holds the epoch counter. It starts with 0x00, outside the keys
// the store uses (see backend.Backend).
var epochKey = []byte{0x00, 'e', 'p', 'o', 'c', 'h'}

var errEmptyValueLog = errors.New("idem: empty value log file")

// needsWritableOpen reports whether a read-only Open failed on a log file
// that only a writable Open sets right (see openBadger). Badger's errors
// cannot be matched with errors.Is; their texts are stable.
func needsWritableOpen(err error) bool {
	return err == errEmptyValueLog ||
		strings.Contains(err.Error(), "truncate required") ||
		strings.Contains(err.Error(), "error while truncation")
}

// openDB opens Badger in managed mode (see committer), mending what a
// process killed inside Badger's own Open leaves behind: each Open creates
// a value log file, and one killed before the file was sized leaves it
// empty, which the next Open refuses ("Create a new file"). That failed
// Open sets the file up all the same (its header, its size), so a second
// Open succeeds.
func openDB(bo badger.Options) (*badger.DB, error) {
	db, err := badger.OpenManaged(bo)
	if err != nil && !bo.ReadOnly && strings.Contains(err.Error(), "Create a new file") {
		db, err = badger.OpenManaged(bo)
	}
	return db, err
}

// hasEmptyValueLog reports whether dir holds a value log file of length 0
// (see openDB).
func hasEmptyValueLog(dir string) bool {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	for _, name := range logs {
		if info, err := os.Stat(name); err == nil && info.Size() == 0 {
			return true
		}
	}
	return false
}

// badgerOptions sizes Badger for a library embedded in someone else's
// process: small memtables and no block cache keep memory low. Records
// longer than valueThreshold are kept in the value log (without
// SyncWrites), and the LSM tree holds their keys and pointers: a memtable
// then holds several times more records, so it is flushed and compacted
// that much less often, which made new keys about 1.35 times as fast at
// the same memory (see docs/numbers.md). The space of expired records comes back through
// Reclaim: a flush of the memtables, compaction and value-log rewrites.
//
// MemTableSize must never shrink for an existing directory: after a crash
// Badger replays the old write-ahead log into a memtable of the new size
// and exits the process if it does not fit.
func badgerOptions(opts Options) badger.Options {
	bo := badger.DefaultOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(badgerLogger{opts.Logger}).
		WithNumVersionsToKeep(1).
		WithMemTableSize(8 << 20).
		// Compactions hold several tables in memory while they build them:
		// small tables keep a burst of writes from costing hundreds of MiB.
		WithBaseTableSize(512 << 10).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(ValueLogFileSize).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithNumCompactors(2).
		WithMetricsEnabled(false).
		WithReadOnly(opts.ReadOnly).
		// Conflict detection is off because no two transactions touch one
		// key at once: a key's writes are made by the claim that holds it
		// (see holds), and the directory lock excludes other writers.
		// Reads are never used to validate a write.
		WithDetectConflicts(false)
	if opts.InMemory || opts.SyncWrites {
		// Without a value log every value is inline, up to Badger's limit.
		// With SyncWrites a commit waits for the disk, not the processor,
		// and a value in the value log is a second file to sync: durable
		// new keys ran 12% slower with it.
		bo = bo.WithValueThreshold(maxInline)
	}
	if opts.Logger == nil {
		bo = bo.WithLogger(nil)
	}
	return bo
}

// valueThreshold is the longest record kept inline in the LSM tree: a
// claim, a failure, a short result. maxInline is Badger's limit, for
// stores that keep every record inline.
const (
	valueThreshold = 64
	maxInline      = 1 << 20
)

// ValueLogFileSize is the size of Badger's value-log files. The file being
// written is given back only once it is full, so it bounds the space that
// expired records keep after a collection; and a record must fit in one
// file, which bounds the longest value a scope stores (at most half of
// it: idem.ScopeOptions.MaxValueSize).
const ValueLogFileSize = 16 << 20

// lockHolder names the process that holds dir, from the pid Badger writes
// into its LOCK file (for information only).
func lockHolder(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "LOCK"))
	if err != nil {
		return ""
	}
	pid := strings.TrimSpace(string(b))
	if pid == "" {
		return ""
	}
	if pid == fmt.Sprint(os.Getpid()) {
		return " (already open in this process)"
	}
	return " (held by pid " + pid + ")"
}

// get appends the value stored under key to dst, and returns its user
// metadata. found is false when the key is absent or Badger has expired
// it.
func (b *Backend) get(dst, key []byte) (value []byte, meta byte, found bool, err error) {
	err = b.view(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found, meta = true, item.UserMeta()
		dst, err = item.ValueCopy(dst)
		return err
	})
	return dst, meta, found, err
}

// scan calls fn for every live key with prefix, in key order, with its
// value and user metadata, valid only during the call.
func (b *Backend) scan(prefix []byte, fn func(key, value []byte, meta byte) error) error {
	return b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if f := b.fault.Load(); f != nil {
				return storageFault(*f) // let mend have the lock
			}
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v, item.UserMeta()) }); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *Backend) currentEpoch() (uint64, error) {
	var epoch uint64
	err := b.db.View(func(txn *badger.Txn) (err error) {
		epoch, err = readEpoch(txn)
		return err
	})
	return epoch, mapBadgerErr(err)
}

func (b *Backend) nextEpoch() (uint64, error) {
	var epoch uint64
	err := b.commits.update(func(txn *badger.Txn) (err error) {
		if epoch, err = readEpoch(txn); err != nil {
			return err
		}
		epoch++
		return txn.Set(epochKey, binary.LittleEndian.AppendUint64(nil, epoch))
	})
	if err != nil {
		return 0, mapBadgerErr(err)
	}
	// The epoch must be durable before any record is written with it.
	return epoch, mapBadgerErr(b.db.Sync())
}

// readEpoch reads the epoch counter (0 in a new store).
func readEpoch(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(epochKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var epoch uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: epoch counter is %d bytes", backend.ErrCorrupt, len(v))
		}
		epoch = binary.LittleEndian.Uint64(v)
		return nil
	})
	return epoch, err
}

func (b *Backend) close() error {
	close(b.closing)
	b.mending.Wait()
	b.guard.stop()
	b.keys.stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if b.db != nil { // nil: a failed Badger that mend closed and could not open again
		b.commits.stop()
		err = b.closeDB()
	}
	if b.copyDir != "" {
		err = errors.Join(err, os.RemoveAll(b.copyDir))
	}
	return err
}

// copyStore copies the regular files of dir into a new temporary
// directory, reading dir only.
func copyStore(dir string) (string, error) {
	tmp, err := os.MkdirTemp("", "idem-readonly-")
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	for _, e := range entries {
		if err != nil {
			break
		}
		if e.Type().IsRegular() && e.Name() != "LOCK" {
			err = copyFile(filepath.Join(dir, e.Name()), filepath.Join(tmp, e.Name()))
		}
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("idem: copy %s: %w", dir, err)
	}
	return tmp, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return err
	}
	return dst.Close()
}

// mapBadgerErr turns Badger's closed-database error into backend.ErrClosed.
func mapBadgerErr(err error) error {
	if errors.Is(err, badger.ErrDBClosed) {
		return backend.ErrClosed
	}
	return err
}

// badgerLogger routes Badger's logs to a slog.Logger. Badger logs routine
// events (tables opened, compactions) at INFO; they become Debug here.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug-4, f, a) }

func (b badgerLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}
