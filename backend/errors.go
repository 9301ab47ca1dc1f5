package backend

import "errors"

// The errors a backend returns where the store must tell them apart; the
// idem package exports each under the same name, so that callers match
// them with errors.Is whichever package they come from.
var (
	// ErrLeaseLost is returned by Renew, Complete and Release when the
	// caller no longer owns its key: its lease lapsed and another caller
	// took the key over, or the entry was deleted. Nothing was changed.
	ErrLeaseLost = errors.New("idem: claim lost: another caller owns the key")

	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("idem: store closed")

	// ErrLocked is returned by an engine's Open when another process, or
	// another open in this process, holds its storage.
	ErrLocked = errors.New("idem: directory in use")

	// ErrInvalidOptions is returned by an engine's Open or New for options
	// it cannot use.
	ErrInvalidOptions = errors.New("idem: invalid options")

	// ErrCorrupt is returned when stored bytes cannot be decoded. Only the
	// affected key is concerned.
	ErrCorrupt = errors.New("idem: corrupt record")

	// ErrDiskFull is returned by WriteGuard.AllowWrite when the storage is
	// nearly full: nothing must be written but what frees space.
	ErrDiskFull = errors.New("idem: disk nearly full")

	// ErrStorageFault is returned by WriteGuard.AllowWrite, and by any
	// method, while the storage cannot take writes (its directory was made
	// read-only or deleted, the process has no file descriptors left).
	ErrStorageFault = errors.New("idem: storage cannot take writes")
)
