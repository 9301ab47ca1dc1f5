package idem

import "context"

// backend is the storage engine under the store: a durable map from
// persisted keys to encoded records with engine-side expiry.
//
// The store never asks a backend to arbitrate races. All work on one key
// is serialised by the key's shard before it reaches the backend, and a
// directory lock makes this process the only writer, so a plain read
// followed by a plain write is an atomic check-and-set. A backend shared by
// several processes must bring its own atomicity.
type backend interface {
	// get appends the value stored under key to dst. found is false when
	// the key is absent or the engine has expired it.
	get(dst, key []byte) (value []byte, found bool, err error)
	// set durably stores value under key (a claim or a completion); the
	// engine may drop it after the Unix second expiresAt.
	set(key, value []byte, expiresAt uint64) error
	// delete durably removes key (a release).
	delete(key []byte) error
	// deleteAll durably removes keys, together.
	deleteAll(keys [][]byte) error
	// scan calls fn for every live key with prefix, in key order. key and
	// value are valid only during the call.
	scan(prefix []byte, fn func(key, value []byte) error) error
	// sweep calls fn for up to limit keys from start on (in key order) whose
	// newest version is not a deletion, with hidden true and no value for
	// those the engine has already expired, and returns the key to go on
	// from (nil at the end). key and value are valid only during the call.
	sweep(start []byte, limit int, fn func(key, value []byte, hidden bool) error) (next []byte, err error)
	// reclaim asks the engine to give back the space of deleted and
	// expired records, and reports the value-log files it rewrote.
	reclaim(ctx context.Context) (rewrites int, err error)
	// diskSize is the bytes the store occupies on disk.
	diskSize() int64
	// currentEpoch returns the store's epoch counter.
	currentEpoch() (uint64, error)
	// nextEpoch durably increments and returns the store's epoch counter.
	nextEpoch() (uint64, error)
	close() error
}
