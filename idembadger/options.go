// Package idembadger is idem's embedded default engine: a
// [backend.Backend] on Badger (github.com/dgraph-io/badger) in a directory
// that one process uses at a time, or in memory. idem.Open uses it for
// Options.Dir and Options.InMemory; open it yourself only to set what
// those do not (see [Options]) and pass it as idem.Options.Backend.
//
// All of its mechanics are here: claims held in memory (holds), group
// commit, the filter of stored keys (presence), the disk guard, the
// containment of a failed Badger (mend), and the mending of what a killed
// process leaves behind.
package idembadger

import (
	"fmt"
	"log/slog"

	"github.com/idemkit/idem/backend"
)

// Options configures [Open]. idem.Open fills it from idem.Options.
type Options struct {
	// Dir is the directory holding the store. It is created if missing.
	Dir string
	// InMemory keeps everything in memory; Dir must then be empty.
	InMemory bool
	// SyncWrites makes every write reach stable storage before it is
	// acknowledged: it then survives power loss too.
	SyncWrites bool
	// ReadOnly opens the store without changing a byte of it (a store whose
	// process was killed is read from a private copy); writes fail.
	ReadOnly bool
	// MinFreeDisk is the free space, in bytes, kept on the directory's file
	// system beyond half the store's size: below it new keys are refused
	// (see [Backend.AllowWrite]). Zero means DefaultMinFreeDisk; negative
	// turns this check off.
	MinFreeDisk int64
	// FilterKeys is the least number of keys the filter of stored keys is
	// sized for (10 to 20 bits each). Zero means 1<<20 (2 MiB).
	FilterKeys int
	// Logger receives Badger's logs and the engine's. Nil discards them.
	Logger *slog.Logger
}

// invalid is an ErrInvalidOptions error saying what was wrong.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", backend.ErrInvalidOptions, fmt.Sprintf(format, args...))
}

// corrupt is an ErrCorrupt error saying what was damaged.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", backend.ErrCorrupt, fmt.Sprintf(format, args...))
}
