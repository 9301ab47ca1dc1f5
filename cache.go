package idem

// recordCache keeps a shard's recently used finished records, so that
// replays of hot keys never touch the disk. It holds only records that are
// also stored (completed, failed, too large), never in-progress ones, and
// is bounded in bytes with least-recently-used eviction. Not safe for
// concurrent use: the shard's mutex guards it.
type recordCache struct {
	limit, used int
	entries     map[string]*cacheEntry
	lru         cacheEntry // sentinel: lru.next is the most recent entry
}

type cacheEntry struct {
	key        string
	rec        *record // shared, never modified
	until      int64   // Unix nanoseconds the entry may be replayed until
	size       int
	prev, next *cacheEntry
}

// cacheEntryOverhead approximates the bytes an entry costs beyond its key,
// value and fingerprint: the entry, the record and the map slot.
const cacheEntryOverhead = 250

func (c *recordCache) init(limit int) {
	c.limit = limit
	c.entries = make(map[string]*cacheEntry)
	c.lru.prev, c.lru.next = &c.lru, &c.lru
}

// get returns the record cached for key and until when it may be
// replayed, or nil.
func (c *recordCache) get(key []byte) (*record, int64) {
	e := c.entries[string(key)]
	if e == nil {
		return nil, 0
	}
	c.unlink(e)
	c.pushFront(e)
	return e.rec, e.until
}

// put caches rec for key until the Unix nanosecond until, replacing what
// was there. A record larger than the whole cache is not kept.
func (c *recordCache) put(key string, rec *record, until int64) {
	c.remove(key)
	size := len(key) + len(rec.value) + len(rec.fingerprint) + cacheEntryOverhead
	if size > c.limit {
		return
	}
	for c.used+size > c.limit {
		c.drop(c.lru.prev)
	}
	e := &cacheEntry{key: key, rec: rec, until: until, size: size}
	c.entries[key] = e
	c.used += size
	c.pushFront(e)
}

// remove forgets key.
func (c *recordCache) remove(key string) {
	if e := c.entries[key]; e != nil {
		c.drop(e)
	}
}

func (c *recordCache) drop(e *cacheEntry) {
	c.unlink(e)
	delete(c.entries, e.key)
	c.used -= e.size
}

func (c *recordCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *recordCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}
