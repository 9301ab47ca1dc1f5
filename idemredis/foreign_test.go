package idemredis_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/idemredis/redistest"
)

// foreignKeys writes, under be's prefix, what something other than idem
// might: a string that is no entry, one that nearly is, and a hash. It
// returns their keys and a function that fails t unless they are intact.
func foreignKeys(t *testing.T, rdb *redis.Client, be *idemredis.Backend) ([][]byte, func()) {
	ctx := context.Background()
	strs := map[string]string{"foreign": "not an entry of idem's", "almost": "7,99999999999999,a,b,c;hello"}
	var keys [][]byte
	for k, v := range strs {
		require.NoError(t, rdb.Set(ctx, idemredis.RedisKey(be, []byte(k)), v, 0).Err())
		keys = append(keys, []byte(k))
	}
	require.NoError(t, rdb.HSet(ctx, idemredis.RedisKey(be, []byte("hash")), "f", "v").Err())
	keys = append(keys, []byte("hash"))
	return keys, func() {
		t.Helper()
		for k, v := range strs {
			got, err := rdb.Get(ctx, idemredis.RedisKey(be, []byte(k))).Result()
			require.NoError(t, err)
			assert.Equal(t, v, got, k)
		}
		got, err := rdb.HGet(ctx, idemredis.RedisKey(be, []byte("hash")), "f").Result()
		require.NoError(t, err)
		assert.Equal(t, "v", got)
	}
}

// A key idem did not write cannot be claimed or read: the error says so.
// To an owner it is a key it no longer owns. Its value is left as it was
// (a string gets the expiry of a completion tried on it, which replaced
// its own).
func TestForeignEntryIsReportedAndKeepsItsValue(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := context.Background()
	for _, quick := range []bool{true, false} {
		t.Run(fmt.Sprintf("quick claims %v", quick), func(t *testing.T) {
			be, err := idemredis.New(rdb, idemredis.Options{Prefix: redistest.Prefix(t, rdb)})
			require.NoError(t, err)
			defer be.Close()
			if !quick {
				idemredis.ScriptClaimsOnly(be)
			}
			req := backend.ClaimRequest{Value: []byte("x"), Lease: time.Minute, TTL: time.Hour}
			_, err = be.Claim(ctx, []byte("warm-up"), req) // the server's clock is known after it: quick claims from here on
			require.NoError(t, err)
			keys, intact := foreignKeys(t, rdb, be)
			for _, key := range keys {
				want := "malformed entry"
				if string(key) == "hash" {
					want = "WRONGTYPE"
				}
				_, err = be.Claim(ctx, key, req)
				assert.ErrorContains(t, err, want, "claim %s", key)
				_, _, err = be.Get(ctx, key)
				assert.ErrorContains(t, err, want, "get %s", key)
				assert.ErrorIs(t, be.Complete(ctx, key, 12345, []byte("v"), time.Hour), backend.ErrLeaseLost, "complete %s", key)
				assert.ErrorIs(t, be.Release(ctx, key, 12345), backend.ErrLeaseLost, "release %s", key)
				assert.ErrorIs(t, be.Renew(ctx, key, 12345, time.Minute), backend.ErrLeaseLost, "renew %s", key)
			}
			var scanned []string // a scan passes over them, as over keys not idem's
			require.NoError(t, be.Scan(ctx, nil, func(k []byte, _ backend.Entry) error { scanned = append(scanned, string(k)); return nil }))
			assert.Equal(t, []string{"warm-up"}, scanned)
			intact()
		})
	}
}

// The calls of concurrent callers share one script call; a key idem did
// not write answers for itself, and the others get their replies.
func TestForeignEntryAnswersOnlyForItselfInABatch(t *testing.T) {
	rdb := redistest.Client(t)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: redistest.Prefix(t, rdb)})
	require.NoError(t, err)
	defer be.Close()
	ctx := context.Background()
	foreign, intact := foreignKeys(t, rdb, be)

	// held claims a key of its own for an operation that needs an owner.
	held := func(name string) ([]byte, string) {
		key := []byte("held-" + name)
		res, err := be.Claim(ctx, key, backend.ClaimRequest{Value: []byte("x"), Lease: time.Minute, TTL: time.Hour})
		require.NoError(t, err)
		require.NotZero(t, res.Owner)
		return key, strconv.FormatUint(res.Owner, 10)
	}
	claimArgs := []any{"x", 60000, 3600000, "0", "0", ""}
	for _, tc := range []struct {
		name    string
		key     func() ([]byte, []any)
		owned   bool // an owner's operation: a foreign key replies 0
		replies any  // the other key's reply
	}{
		{"claim", func() ([]byte, []any) { return []byte("new"), claimArgs }, false, nil},
		{"get", func() ([]byte, []any) { k, _ := held("get"); return k, nil }, false, nil},
		{"watch", func() ([]byte, []any) { k, _ := held("watch"); return k, nil }, false, int64(1)},
		{"renew", func() ([]byte, []any) { k, o := held("renew"); return k, []any{o, 60000} }, true, int64(1)},
		{"complete", func() ([]byte, []any) { k, o := held("complete"); return k, []any{o, "v", 3600000} }, true, int64(1)},
		{"release", func() ([]byte, []any) { k, o := held("release"); return k, []any{o} }, true, int64(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, args := tc.key()
			foreignArgs := args
			if tc.name != "claim" && args != nil {
				foreignArgs = append([]any{"12345"}, args[1:]...) // an owner the foreign keys never had
			}
			keys := append([][]byte{key}, foreign...)
			all := [][]any{args}
			for range foreign {
				all = append(all, foreignArgs)
			}
			replies, errs := idemredis.SendTogether(be, tc.name, keys, all)
			require.NoError(t, errs[0])
			if tc.replies != nil {
				assert.Equal(t, tc.replies, replies[0])
			} else {
				assert.IsType(t, []any{}, replies[0])
			}
			for i := 1; i < len(keys); i++ {
				if tc.owned {
					assert.NoError(t, errs[i], keys[i])
					assert.Equal(t, int64(0), replies[i], keys[i])
					continue
				}
				want := "malformed entry"
				if string(keys[i]) == "hash" {
					want = "WRONGTYPE"
				}
				assert.ErrorContains(t, errs[i], want, keys[i])
				assert.Nil(t, replies[i], keys[i])
			}
			intact()
		})
	}
}

// A running call whose entry is overwritten by something else has lost
// its key: its function is told so, as when another owner takes it.
func TestOverwrittenClaimIsALostLease(t *testing.T) {
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t, rdb)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
	require.NoError(t, err)
	st, err := idem.Open(idem.Options{Backend: be, Lease: 300 * time.Millisecond})
	require.NoError(t, err)
	defer st.Close()
	sc, err := st.Scope("s", idem.ScopeOptions{})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = sc.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		require.NoError(t, rdb.Set(ctx, keys[0], "not an entry of idem's", 0).Err())
		select {
		case <-ctx.Done():
			assert.ErrorIs(t, context.Cause(ctx), idem.ErrLeaseLost)
		case <-time.After(5 * time.Second): // many leases: the lease is renewed within each
			t.Error("the function was not told that its key was lost")
		}
		return []byte("v"), nil
	})
	assert.ErrorIs(t, err, idem.ErrLeaseLost)
}
