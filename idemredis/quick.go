package idemredis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/idemkit/idem/backend"
)

// minQuickOwner is the least owner of a quick claim: quick owners have 17
// or more digits, script owners (tokens) 16. Drawn at random from nearly
// 2^63 numbers, two owners of one key are the same with a chance of about
// one in 10^18.
const minQuickOwner = 1e17

// quickClaim tries to claim a key with the plain command SET NX GET, which
// costs the server a fraction of the claim script, so that a new key
// costs one script (its completion) instead of two.
//
// Without a script, the entry is written before the server's clock is
// read: its lease and expiry are placed by the estimate of that clock
// (serverclock, never early), its owner is drawn at random, and its token
// is the server's time read right after the SET, in the same pipeline.
// That token exceeds every earlier owner's: the key was free when the SET
// ran, so every earlier owner's entry was gone by then — released after
// its owner had its token, or deleted, or lapsed after its lease, which
// ends after its token (checked below) — and a takeover script gives a
// later owner the time it runs, after this lease ends.
//
// nowUS is the estimate of the server's clock at the local time sent,
// before the command is queued. done is false if only the claim script
// can decide: the key holds an entry req may replace, or the claim took
// longer than its lease (it is released again).
func (b *Backend) quickClaim(ctx context.Context, key []byte, rkey string, req backend.ClaimRequest, nowUS int64, sent time.Time) (res backend.ClaimResult, done bool, err error) {
	owner := minQuickOwner + rand.Uint64N(math.MaxInt64-minQuickOwner)
	now := nowUS / 1000
	lease := now + ms(req.Lease)
	expires := now + max(ms(req.TTL), ms(req.Lease), 1)
	value := make([]byte, 0, 64+len(req.Value))
	value = strconv.AppendUint(value, owner, 10)
	value = append(value, ',')
	value = strconv.AppendInt(value, lease, 10)
	value = append(value, ",0,"...)
	value = strconv.AppendInt(value, expires, 10)
	value = append(value, ",0;"...)
	value = append(value, req.Value...)

	late := func(r setReply, err error) {
		if err == nil && !r.found {
			b.giveBack(rkey, owner) // see Claim
		}
	}
	r, err := b.pipe.runSet(ctx, late, rkey, value, expires)
	if err != nil {
		if ctx.Err() == nil {
			// The reply was lost (a broken connection): the SET may have
			// run all the same, and its owner is known. Give it back.
			go b.giveBack(rkey, owner)
		}
		return res, true, err
	}
	b.clock.Observe(sent, r.us)
	if !r.found {
		if r.us < lease*1000 {
			return backend.ClaimResult{Owner: owner, Token: uint64(r.us)}, true, nil
		}
		// Too slow: the token would not end before the lease.
		if err := b.owned(ctx, &releaseOp, key, ownerArg(owner)); err != nil && !errors.Is(err, backend.ErrLeaseLost) {
			return res, true, err
		}
		return res, false, nil
	}
	e, err := parseEntry(r.prev, r.us/1000)
	if err != nil {
		return res, true, fmt.Errorf("idemredis: claim: %w", err)
	}
	if req.Replaces(e) {
		return res, false, nil // the script decides, atomically
	}
	return backend.ClaimResult{Found: true, Prev: e}, true, nil
}
