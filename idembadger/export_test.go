package idembadger

// CopyStore copies a store's files, as a read-only Open of a killed store
// does, for tests outside the package.
var CopyStore = copyStore

// BadgerOptions are the Badger options Open uses.
var BadgerOptions = badgerOptions

// HeldClaims counts the claims b holds in memory.
func HeldClaims(b *Backend) int {
	n := 0
	for i := range b.holds.stripes {
		s := &b.holds.stripes[i]
		s.mu.Lock()
		n += len(s.held)
		s.mu.Unlock()
	}
	return n
}
