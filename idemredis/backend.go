// Package idemredis is a [backend.Backend] on Redis 7.0 or later (or
// Valkey), for a service that runs several instances: a retry that lands
// on another instance finds the key claimed or its result stored, and a
// duplicate arriving there while the first call runs waits for its result
// (woken through pub/sub when it is stored).
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379"})
//	be, err := idemredis.New(rdb, idemredis.Options{Prefix: "orders:"})
//	if err != nil { ... }
//	st, err := idem.Open(idem.Options{Backend: be})
//
// Claims (a single SET NX GET where they can be: see quickClaim),
// renewals, completions and releases are atomic on the server; a claim
// carries an owner and a lease measured on the Redis server's clock, which
// the store renews while the work runs, and a fencing token read from that
// clock. An
// instance that dies stops renewing: once its lease lapses, its claim is an
// orphan ([github.com/idemkit/idem.OrphanPolicy]). An owner that lost its key (paused past its
// lease, then taken over) can no longer complete it: [backend.ErrLeaseLost].
// Records expire with Redis TTLs, so Redis needs no collector, and the
// store dates them by the server's clock too ([Backend.Now]): an instance
// whose own clock is wrong neither shortens nor lengthens a record's
// life, which is its TTL on the server's clock, give or take the round
// trip of one clock reading.
//
// Each record is one Redis string under prefix + "{" + hex(key) + "}": the
// hash tag keeps every script on one slot of a Redis Cluster.
//
// Durability is Redis's: an acknowledged claim or result survives what
// the server's persistence (AOF with appendfsync always, or replicas with
// WAIT) makes it survive.
package idemredis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/internal/serverclock"
)

// Options configures [New].
type Options struct {
	// Prefix starts every Redis key of the backend, so that several
	// stores can share a server. Zero means "idem:". It may not contain
	// braces, which would change the keys' hash tag.
	Prefix string
}

// Backend is a [backend.Backend] on Redis. It is safe for concurrent use.
type Backend struct {
	rdb    redis.UniversalClient
	prefix string
	pipe   *pipeliner
	quick  bool // claims are tried without a script first (quickClaim)
	clock  serverclock.Clock
	watch  watchers
	once   sync.Once // stops pipe and watch
}

// New returns a backend that keeps its records in rdb: a Client (also a
// failover client, for Sentinel) or a ClusterClient. Calls made at the
// same time share pipelines (round trips) to the server. The client stays
// the caller's: Close (which [github.com/idemkit/idem.Store.Close] calls) ends the backend's
// goroutines but does not close the client.
func New(rdb redis.UniversalClient, opts Options) (*Backend, error) {
	if opts.Prefix == "" {
		opts.Prefix = "idem:"
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("%w: idemredis prefix %q contains a brace", backend.ErrInvalidOptions, opts.Prefix)
	}
	switch rdb.(type) {
	case nil:
		return nil, fmt.Errorf("%w: idemredis needs a client", backend.ErrInvalidOptions)
	case *redis.Ring:
		// A Ring's shards share nothing: one key's claim and its result
		// could land on different servers after a shard change, and
		// scripts over several keys would run on one shard.
		return nil, fmt.Errorf("%w: idemredis does not support redis.Ring (use a Client, a failover Client or a ClusterClient)", backend.ErrInvalidOptions)
	}
	p := startPipeliner(rdb)
	b := &Backend{rdb: rdb, prefix: opts.Prefix, pipe: p, quick: !p.cluster}
	b.clock.Read = b.serverTime
	return b, nil
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Watcher = (*Backend)(nil)
	_ backend.Clock   = (*Backend)(nil)
)

const hexDigits = "0123456789abcdef"

// redisKey is the Redis key of a backend key.
func (b *Backend) redisKey(key []byte) string {
	var sb strings.Builder
	sb.Grow(len(b.prefix) + 2 + 2*len(key))
	sb.WriteString(b.prefix)
	sb.WriteByte('{')
	for _, c := range key {
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&15])
	}
	sb.WriteByte('}')
	return sb.String()
}

// ms turns a duration into whole milliseconds, rounding up.
func ms(d time.Duration) int64 { return int64((max(d, 0) + time.Millisecond - 1) / time.Millisecond) }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Claim implements [backend.Backend]. Volatile claims are stored like any:
// other instances must see them. While the server's clock is known (see
// serverclock), a claim is first tried without a script (quickClaim); a
// Cluster's nodes each have their own clock, so there every claim is a
// script.
func (b *Backend) Claim(ctx context.Context, key []byte, req backend.ClaimRequest) (backend.ClaimResult, error) {
	rkey := b.redisKey(key)
	now, sent, ok := b.clock.Estimate()
	if ok && b.quick {
		if res, done, err := b.quickClaim(ctx, key, rkey, req, now, sent); done {
			return res, err
		}
	}
	// A claim that lands after its caller left is given back at once, so
	// that it neither blocks the key for a lease nor, under OrphanReport,
	// reads as an orphan: nothing ran.
	late := func(reply any, err error) {
		if res, err := b.claimReply(reply, err, sent); err == nil && res.Owner != 0 {
			b.giveBack(rkey, res.Owner)
		}
	}
	reply, err := b.pipe.runOrHandOver(ctx, late, &claimOp, rkey,
		req.Value, ms(req.Lease), max(ms(req.TTL), ms(req.Lease), 1), flag(req.Takeover),
		flag(req.Stale != nil), req.Stale)
	return b.claimReply(reply, err, sent)
}

// claimReply reads the claim script's reply to a call sent at sent.
func (b *Backend) claimReply(reply any, err error, sent time.Time) (backend.ClaimResult, error) {
	if err != nil {
		return backend.ClaimResult{}, err
	}
	v, ok := reply.([]any)
	if !ok || len(v) != 5 {
		return backend.ClaimResult{}, fmt.Errorf("idemredis: claim: reply %v", reply)
	}
	owner, err1 := token(v[0])
	prevOwner, err2 := token(v[1])
	read, err3 := token(v[4])
	if err := errors.Join(err1, err2, err3); err != nil {
		return backend.ClaimResult{}, fmt.Errorf("idemredis: claim: %w", err)
	}
	b.clock.Observe(sent, int64(read))
	res := backend.ClaimResult{Owner: owner, Token: owner}
	if prev, ok := v[3].(string); ok {
		res.Found = true
		res.Prev = backend.Entry{Value: []byte(prev), Owner: prevOwner, Lapsed: v[2] == int64(1)}
	}
	return res, nil
}

// giveBackTimeout bounds the release of a claim whose caller left.
const giveBackTimeout = 5 * time.Second

// giveBack releases owner's claim of the Redis key rkey, which nobody will
// run: its caller left before the claim was acknowledged. It is best
// effort; a claim it cannot release lapses after its lease. (It takes the
// Redis key, a string, because the caller's key slice is not its to keep.)
func (b *Backend) giveBack(rkey string, owner uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	_, _ = b.pipe.run(ctx, &releaseOp, rkey, ownerArg(owner))
}

// token parses a number (an owner, a token, a time) from a script's reply.
func token(v any) (uint64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("token of type %T", v)
	}
	return strconv.ParseUint(s, 10, 64)
}

// owned runs an operation that replies 1 for the owner and 0 otherwise;
// its first argument is the owner (see ownerArg). Owner 0, a finished
// entry's, owns nothing.
func (b *Backend) owned(ctx context.Context, o *op, key []byte, args ...any) error {
	if args[0] == noOwner {
		return backend.ErrLeaseLost
	}
	reply, err := b.pipe.run(ctx, o, b.redisKey(key), args...)
	if err != nil {
		return err
	}
	if reply != int64(1) {
		return backend.ErrLeaseLost
	}
	return nil
}

// Renew implements [backend.Backend].
func (b *Backend) Renew(ctx context.Context, key []byte, owner uint64, lease time.Duration) error {
	return b.owned(ctx, &renewOp, key, ownerArg(owner), ms(lease))
}

// Complete implements [backend.Backend].
func (b *Backend) Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	return b.owned(ctx, &completeOp, key, ownerArg(owner), value, max(ms(ttl), 1))
}

// Release implements [backend.Backend].
func (b *Backend) Release(ctx context.Context, key []byte, owner uint64) error {
	return b.owned(ctx, &releaseOp, key, ownerArg(owner))
}

// ownerArg is an owner as a script argument.
func ownerArg(owner uint64) string { return strconv.FormatUint(owner, 10) }

// noOwner is a finished entry's owner as a script argument.
var noOwner any = ownerArg(0)

// Get implements [backend.Backend].
func (b *Backend) Get(ctx context.Context, key []byte) (backend.Entry, bool, error) {
	reply, err := b.pipe.run(ctx, &getOp, b.redisKey(key))
	if err != nil || reply == nil {
		return backend.Entry{}, false, err
	}
	v, ok := reply.([]any)
	if !ok || len(v) != 3 {
		return backend.Entry{}, false, fmt.Errorf("idemredis: get: reply %v", reply)
	}
	e, err := entry(v[0], v[1] == int64(1), v[2])
	if err != nil {
		return backend.Entry{}, false, fmt.Errorf("idemredis: get: %w", err)
	}
	return e, true, nil
}

// entry builds an Entry from reply fields.
func entry(owner any, lapsed bool, value any) (backend.Entry, error) {
	o, err := token(owner)
	if err != nil {
		return backend.Entry{}, err
	}
	v, ok := value.(string)
	if !ok {
		return backend.Entry{}, fmt.Errorf("value of type %T", value)
	}
	return backend.Entry{Value: []byte(v), Owner: o, Lapsed: lapsed}, nil
}

// Delete implements [backend.Backend].
func (b *Backend) Delete(ctx context.Context, key []byte) error {
	if err := b.rdb.Del(ctx, b.redisKey(key)).Err(); err != nil {
		return fmt.Errorf("idemredis: delete: %w", err)
	}
	return nil
}

// scanBatch is how many keys one SCAN step asks for, and one pipeline
// reads.
const scanBatch = 512

// Scan implements [backend.Backend]. It walks the keys with SCAN (on every
// master of a cluster), so an entry written or deleted meanwhile may or
// may not be seen; one seen is seen once.
func (b *Backend) Scan(ctx context.Context, prefix []byte, fn func(key []byte, e backend.Entry) error) error {
	match := globEscape(b.prefix) + "{" + hex.EncodeToString(prefix) + "*"
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		seen := make(map[string]bool) // SCAN may return a key twice
		for {
			keys, next, err := c.Scan(ctx, cursor, match, scanBatch).Result()
			if err != nil {
				return fmt.Errorf("idemredis: scan: %w", err)
			}
			if err := b.read(ctx, c, keys, seen, fn); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, b.rdb)
}

// read fetches the entries of keys found by a scan, in one pipeline, and
// calls fn for the live ones not seen before.
func (b *Backend) read(ctx context.Context, c redis.UniversalClient, keys []string, seen map[string]bool, fn func([]byte, backend.Entry) error) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := c.Pipeline()
	clock := pipe.Time(ctx)
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	_, _ = pipe.Exec(ctx) // errors are in each command
	if err := clock.Err(); err != nil {
		return fmt.Errorf("idemredis: scan: %w", err)
	}
	now := clock.Val().UnixMilli()
	for i, k := range keys {
		var reply redis.Error // the server's answer for this key alone: another type (WRONGTYPE)
		if err := cmds[i].Err(); err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply) {
			return fmt.Errorf("idemredis: scan: %w", err) // the connection's
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		raw, err := hex.DecodeString(strings.TrimSuffix(strings.TrimPrefix(k, b.prefix+"{"), "}"))
		if err != nil || cmds[i].Err() != nil {
			continue // not one of ours, or gone since the scan saw it
		}
		e, err := parseEntry(cmds[i].Val(), now)
		if err != nil {
			continue // not one of ours either: its value is not an entry
		}
		if err := fn(raw, e); err != nil {
			return err
		}
	}
	return nil
}

// parseEntry decodes a stored entry (see scripts.go) read at server time
// now, in milliseconds. It accepts what the scripts' parse does: four
// numbers and a digit.
func parseEntry(s string, now int64) (backend.Entry, error) {
	head, value, ok := strings.Cut(s, ";")
	parts := strings.Split(head, ",")
	if !ok || len(parts) != 5 || len(parts[4]) != 1 {
		return backend.Entry{}, errMalformed
	}
	var fields [5]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return backend.Entry{}, errMalformed
		}
		fields[i] = n
	}
	owner, lease := fields[0], fields[1]
	return backend.Entry{Value: []byte(value), Owner: owner, Lapsed: owner != 0 && lease <= uint64(max(now, 0))}, nil
}

// errMalformed is the error of a key whose entry idem did not write.
var errMalformed = errors.New("malformed entry")

// globEscape escapes the characters SCAN's MATCH pattern treats specially.
func globEscape(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// Close implements [backend.Backend]. It leaves the client open.
func (b *Backend) Close() error {
	b.once.Do(func() {
		b.stopWatching()
		b.pipe.stop()
	})
	return nil
}
