package idem

// recordCache keeps a shard's recently used finished records, so that
// replays of hot keys never touch the disk. It holds only records that are
// also stored (completed, failed, too large), never in-progress ones, and
// is bounded in bytes. Not safe for concurrent use: the shard's mutex
// guards it.
//
// Eviction is least-recently-used in two segments. A record this process
// has just stored enters probation; a replay (a hit, or a read from the
// backend) puts a record in the protected segment. Probation keeps a fifth
// of the space at least and evicts only its own records beyond that, so a
// burst of outcomes that nobody replays never pushes out the records that
// are being replayed.
//
// The protected segment approximates LRU with a second chance: a hit there
// only marks the entry (once), and eviction moves a marked entry back to
// the front instead of dropping it. Moving an entry on every hit would
// write to it and its two neighbours under the shard's mutex, lines that
// the other cores replaying the same keys then have to fetch back.
//
// Entries are found by the key's hash (the shard's), and an entry keeps
// its key, value and fingerprint in one allocation: a replay of a key that
// is no longer in the processor's caches reads the map's slot, the entry
// and that one run of bytes, not also a key string of its own. Two keys
// with one hash cannot both be cached: the later replaces the earlier.
type recordCache struct {
	limit, used          int
	entries              map[uint64]*cacheEntry
	protected, probation segment
}

// segment is one LRU list of the cache.
type segment struct {
	lru  cacheEntry // sentinel: lru.next is the most recent entry
	used int
}

type cacheEntry struct {
	// What a hit reads first.
	blob       []byte // the key, then the value and the fingerprint, which rec aliases; never modified
	keyLen     int
	until      int64 // Unix nanoseconds the entry may be replayed until
	seg        *segment
	referenced bool   // hit since eviction last passed it (protected only)
	rec        record // a copy, in the entry: a hit reads one object less from memory

	hash       uint64
	size       int
	prev, next *cacheEntry
}

// cacheEntryOverhead approximates the bytes an entry costs beyond its key,
// value and fingerprint: the entry, the record and the map slot.
const cacheEntryOverhead = 250

func (c *recordCache) init(limit int) {
	c.limit = limit
	c.entries = make(map[uint64]*cacheEntry)
	for _, sg := range []*segment{&c.protected, &c.probation} {
		sg.lru.prev, sg.lru.next = &sg.lru, &sg.lru
	}
}

// lookup returns the entry of key, whose hash is h, or nil.
func (c *recordCache) lookup(h uint64, key []byte) *cacheEntry {
	if e := c.entries[h]; e != nil && string(e.blob[:e.keyLen]) == string(key) {
		return e
	}
	return nil
}

// get returns the record cached for key, whose hash is h, and until when
// it may be replayed, or nil. A hit protects the record.
func (c *recordCache) get(h uint64, key []byte) (*record, int64) {
	e := c.lookup(h, key)
	if e == nil {
		return nil, 0
	}
	switch {
	case e.seg != &c.protected:
		c.unlink(e)
		c.pushFront(e, &c.protected)
	case !e.referenced:
		e.referenced = true
	}
	return &e.rec, e.until
}

// put caches rec for key, whose hash is h, until the Unix nanosecond
// until, replacing what was there: protected if it is being replayed, on
// probation if it was just stored. A record larger than the whole cache
// is not kept.
func (c *recordCache) put(h uint64, key []byte, rec *record, until int64, replayed bool) {
	if e := c.entries[h]; e != nil {
		c.drop(e) // key's, or another key's with the same hash
	}
	size := len(key) + len(rec.value) + len(rec.fingerprint) + cacheEntryOverhead
	if size > c.limit {
		return
	}
	for c.used+size > c.limit {
		c.drop(c.victim())
	}
	blob := make([]byte, 0, len(key)+len(rec.value)+len(rec.fingerprint))
	blob = append(append(append(blob, key...), rec.value...), rec.fingerprint...)
	e := &cacheEntry{blob: blob, keyLen: len(key), rec: *rec, until: until, hash: h, size: size}
	value := blob[len(key) : len(key)+len(rec.value)]
	e.rec.value = value[:len(value):len(value)]
	if rec.fingerprint != nil {
		e.rec.fingerprint = blob[len(key)+len(rec.value):]
	}
	c.entries[h] = e
	c.used += size
	sg := &c.probation
	if replayed {
		sg = &c.protected
	}
	c.pushFront(e, sg)
}

// victim is the entry to evict next: the oldest on probation while
// probation holds more than its share (or all there is), else the oldest
// protected one not hit since eviction last passed it. The marked entries
// passed by lose their mark and go back to the front; one pass clears
// every mark, so the loop ends.
func (c *recordCache) victim() *cacheEntry {
	if c.probation.used > 0 && (c.probation.used >= c.limit/5 || c.protected.used == 0) {
		return c.probation.lru.prev
	}
	for {
		e := c.protected.lru.prev
		if !e.referenced {
			return e
		}
		e.referenced = false
		c.unlink(e)
		c.pushFront(e, &c.protected)
	}
}

// remove forgets key, whose hash is h.
func (c *recordCache) remove(h uint64, key []byte) {
	if e := c.lookup(h, key); e != nil {
		c.drop(e)
	}
}

func (c *recordCache) drop(e *cacheEntry) {
	c.unlink(e)
	delete(c.entries, e.hash)
	c.used -= e.size
}

func (c *recordCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.seg.used -= e.size
}

func (c *recordCache) pushFront(e *cacheEntry, sg *segment) {
	e.seg = sg
	sg.used += e.size
	e.prev, e.next = &sg.lru, sg.lru.next
	sg.lru.next.prev = e
	sg.lru.next = e
}
