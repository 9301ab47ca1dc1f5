package idembadger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/idemkit/idem/backend"
)

// The Badger backend decides ownership in memory: the directory lock makes
// this process the only one using the store, so the claims held right now
// are all in its holds table. A claim belongs to the process, not to a
// lease: its hold stays until its owner completes or releases it, or gives
// it up (Renew with a lease of 0), however long the work runs, and no
// clock can end it (see Exclusive). A persisted in-progress entry that no
// hold owns was left by an earlier epoch (a process that died) or given
// up by this one: it is lapsed.
//
// On disk a finished entry is its value as it is, and an in-progress one
// carries metaClaim in Badger's user metadata and uvarint(owner) before
// its value: completions, the large writes, are stored without a copy.

// holdStripes is the number of independently locked parts of the holds
// table.
const holdStripes = 256

// holds is the table of claims held in this process.
type holds struct {
	stripes [holdStripes]holdStripe
}

type holdStripe struct {
	mu   sync.Mutex
	held map[string]*hold
	// gen counts the holds ended in the stripe. A claim that read the disk
	// without the lock retries if it changed meanwhile, since an ending
	// hold may have written the key.
	gen uint64
	_   [32]byte // keeps neighbouring stripes' mutexes off one cache line
}

// hold is one claim held in this process.
type hold struct {
	owner     uint64
	value     []byte     // the in-progress entry's content
	onDisk    bool       // something is stored under the key: the claim, or what it replaced
	finishing bool       // Complete or Release is writing
	filtered  *filterSet // the presence filters the claim added key to (see presence.check)
}

func (h *hold) entry() backend.Entry {
	return backend.Entry{Value: bytes.Clone(h.value), Owner: h.owner}
}

func (hs *holds) init() {
	for i := range hs.stripes {
		hs.stripes[i].held = make(map[string]*hold)
	}
}

func (hs *holds) stripe(key []byte) *holdStripe {
	return &hs.stripes[xxhash.Sum64(key)%holdStripes]
}

// end removes h, the hold of key, if it is still there. s.mu is held.
func (s *holdStripe) end(key []byte, h *hold) {
	if s.held[string(key)] == h {
		delete(s.held, string(key))
		s.gen++
	}
}

// token mints an owner token: the epoch in the high bits makes tokens grow
// across restarts.
func (b *Backend) token() uint64 { return b.epoch<<40 | b.seq.Add(1)&(1<<40-1) }

// Claim implements [Backend]. A held key is never replaced: its hold does
// not lapse.
func (b *Backend) Claim(_ context.Context, key []byte, req backend.ClaimRequest) (backend.ClaimResult, error) {
	if err := b.overLimit(req.Value); err != nil {
		return backend.ClaimResult{}, err
	}
	s := b.holds.stripe(key)
	for {
		s.mu.Lock()
		if h := s.held[string(key)]; h != nil {
			s.mu.Unlock()
			return backend.ClaimResult{Found: true, Prev: h.entry()}, nil
		}
		if may, in, full := b.keys.check(key); !may {
			res, err := b.take(s, key, req, backend.ClaimResult{}, false, in) // not stored: no read
			if full {
				b.keys.refresh()
			}
			return res, err
		}
		gen := s.gen
		s.mu.Unlock()

		raw, meta, found, err := b.get(nil, key)
		if err != nil {
			return backend.ClaimResult{}, err
		}
		s.mu.Lock()
		if s.gen != gen || s.held[string(key)] != nil {
			s.mu.Unlock()
			continue // a hold ended or began meanwhile: look again
		}
		var res backend.ClaimResult
		if found {
			e, err := unframe(raw, meta)
			if err != nil {
				s.mu.Unlock()
				return backend.ClaimResult{}, err
			}
			e.Lapsed = e.Owner != 0 // no hold owns it
			res = backend.ClaimResult{Found: true, Prev: e}
			if !req.Replaces(e) {
				s.mu.Unlock()
				return res, nil
			}
		}
		return b.take(s, key, req, res, found, nil)
	}
}

// take makes a new hold of key for req, replacing what res.Prev describes,
// and persists it unless it is volatile. filtered is where check added
// key. s.mu is held; take unlocks it.
func (b *Backend) take(s *holdStripe, key []byte, req backend.ClaimRequest, res backend.ClaimResult, onDisk bool, filtered *filterSet) (backend.ClaimResult, error) {
	h := &hold{
		owner:    b.token(),
		value:    req.Value, // the backend's to keep (see ClaimRequest)
		onDisk:   onDisk || !req.Volatile,
		filtered: filtered,
	}
	if !req.Volatile {
		h.finishing = true // not given up before it is written
	}
	s.held[string(key)] = h
	s.mu.Unlock()
	res.Owner, res.Token = h.owner, h.owner
	if req.Volatile {
		return res, nil
	}
	err := b.write(change{key: key, value: frame(h.owner, req.Value), meta: metaClaim}, h.filtered)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.end(key, h)
		return backend.ClaimResult{}, err
	}
	h.finishing = false
	return res, nil
}

// own returns key's hold if owner holds it, marked finishing so that it
// cannot be given up while the caller writes.
func (b *Backend) own(s *holdStripe, key []byte, owner uint64) (*hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[string(key)]
	if h == nil || h.owner != owner || h.finishing {
		return nil, backend.ErrLeaseLost
	}
	h.finishing = true
	return h, nil
}

// Renew implements [Backend]. A hold needs no renewal; a lease of 0 gives
// it up: the hold is dropped, and a persisted claim stays on disk as an
// orphan, as if its process had died.
func (b *Backend) Renew(_ context.Context, key []byte, owner uint64, lease time.Duration) error {
	s := b.holds.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[string(key)]
	if h == nil || h.owner != owner {
		return backend.ErrLeaseLost
	}
	if lease == 0 && !h.finishing {
		s.end(key, h)
	}
	return nil
}

// Complete implements [Backend].
func (b *Backend) Complete(_ context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	if err := b.overLimit(value); err != nil {
		return err
	}
	s := b.holds.stripe(key)
	h, err := b.own(s, key, owner)
	if err != nil {
		return err
	}
	err = b.write(change{key: key, value: value}, h.filtered)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		h.finishing = false // still owned: the caller may try again
		return err
	}
	s.end(key, h)
	return nil
}

// Release implements [Backend].
func (b *Backend) Release(_ context.Context, key []byte, owner uint64) error {
	s := b.holds.stripe(key)
	h, err := b.own(s, key, owner)
	if err != nil {
		return err
	}
	if h.onDisk {
		err = b.write(change{key: key, delete: true}, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		h.finishing = false
		return err
	}
	s.end(key, h)
	return nil
}

// Get implements [Backend].
func (b *Backend) Get(_ context.Context, key []byte) (backend.Entry, bool, error) {
	s := b.holds.stripe(key)
	s.mu.Lock()
	if h := s.held[string(key)]; h != nil {
		defer s.mu.Unlock()
		return h.entry(), true, nil
	}
	s.mu.Unlock()
	raw, meta, found, err := b.get(nil, key)
	if err != nil || !found {
		return backend.Entry{}, false, err
	}
	e, err := unframe(raw, meta)
	e.Lapsed = e.Owner != 0 // no hold owns it
	return e, err == nil, err
}

// Delete implements [Backend].
func (b *Backend) Delete(_ context.Context, key []byte) error {
	s := b.holds.stripe(key)
	s.mu.Lock()
	if h := s.held[string(key)]; h != nil {
		s.end(key, h)
	}
	s.mu.Unlock()
	return b.write(change{key: key, delete: true}, nil)
}

// Scan implements [Backend].
func (b *Backend) Scan(ctx context.Context, prefix []byte, fn func(key []byte, e backend.Entry) error) error {
	return b.scan(prefix, func(key, raw []byte, meta byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := unframe(raw, meta)
		if err != nil {
			e = backend.Entry{Value: raw} // damaged framing: let the caller judge the bytes
		}
		if e.Owner != 0 {
			s := b.holds.stripe(key)
			s.mu.Lock()
			h := s.held[string(key)]
			e.Lapsed = h == nil || h.owner != e.Owner
			s.mu.Unlock()
		}
		return fn(key, e)
	})
}

// Close implements [Backend].
func (b *Backend) Close() error { return b.close() }

// write commits one change with the group committer. A key written is
// added to the presence filter once the commit has returned, also when it
// failed (the write may have landed all the same), unless its claim
// added it to the filters still in use (filtered).
func (b *Backend) write(ch change, filtered *filterSet) error {
	err := b.commit(ch)
	if !ch.delete {
		b.keys.add(ch.key, filtered)
	}
	return err
}

// commit writes changes with the group committer (see engine).
func (b *Backend) commit(changes ...change) error {
	for _, ch := range changes {
		if err := refuses(ch); err != nil {
			return err
		}
	}
	err := b.engine(func(_ *badger.DB, c *committer) error { return c.write(changes...) })
	if f := b.fault.Load(); err != nil && f != nil {
		return storageFault(*f)
	}
	return mapBadgerErr(err)
}

// metaClaim marks an in-progress entry in Badger's user metadata.
const metaClaim byte = 1

// frame encodes an in-progress entry for the disk.
func frame(owner uint64, value []byte) []byte {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(value))
	return append(binary.AppendUvarint(buf, owner), value...)
}

// unframe decodes an entry read from the disk with its user metadata; its
// Value aliases raw.
func unframe(raw []byte, meta byte) (backend.Entry, error) {
	if meta&metaClaim == 0 {
		return backend.Entry{Value: raw}, nil
	}
	owner, n := binary.Uvarint(raw)
	if n <= 0 || owner == 0 {
		return backend.Entry{}, corrupt("claim header")
	}
	return backend.Entry{Owner: owner, Value: raw[n:]}, nil
}

// Epoch implements [Exclusive].
func (b *Backend) Epoch() uint64 { return b.epoch }

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.Exclusive  = (*Backend)(nil)
	_ backend.Sweeper    = (*Backend)(nil)
	_ backend.Reclaimer  = (*Backend)(nil)
	_ backend.DiskUser   = (*Backend)(nil)
	_ backend.WriteGuard = (*Backend)(nil)
	_ backend.ValueLimit = (*Backend)(nil)
)

// MaxValue implements [backend.ValueLimit]: the longest value Badger
// takes, less a claim's framing. In memory that is one shorter than its
// inline limit (Badger 4.9.6 accepts one of exactly the limit, then fails
// on it in its write goroutine, which ends the process); on disk, one that
// fits in a value-log file. Claim and Complete refuse a longer one
// (overLimit), so no entry committed is too long for Badger.
func (b *Backend) MaxValue() int {
	longest := ValueLogFileSize
	if b.inMemory {
		longest = maxInline - 1
	}
	return longest - binary.MaxVarintLen64
}

// Badger's own limits on keys.
const (
	maxBadgerKey = 65000
	badgerPrefix = "!badger!"
)

// refuses returns why Badger would refuse ch's key, before it joins a
// batch: in a batch, Badger's refusal would fail every change of it, and
// the backend. The store never sends such a key; a caller of the backend
// may. (Values are kept under Badger's limit by overLimit.)
func refuses(ch change) error {
	switch {
	case len(ch.key) == 0:
		return errors.New("idem: an empty key")
	case len(ch.key) > maxBadgerKey:
		return fmt.Errorf("idem: a key of %d bytes is over the Badger backend's limit of %d", len(ch.key), maxBadgerKey)
	case bytes.HasPrefix(ch.key, []byte(badgerPrefix)):
		return fmt.Errorf("idem: a key starting with %q is Badger's own", badgerPrefix)
	}
	return nil
}

// overLimit refuses a value longer than MaxValue, the limit Claim and
// Complete keep to.
func (b *Backend) overLimit(value []byte) error {
	if len(value) > b.MaxValue() {
		return fmt.Errorf("idem: a value of %d bytes is over the Badger backend's limit of %d", len(value), b.MaxValue())
	}
	return nil
}
