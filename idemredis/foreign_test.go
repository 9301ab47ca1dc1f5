package idemredis_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/idemredis/redistest"
)

// foreignValue is what something other than idem wrote under the prefix.
const foreignValue = "not an entry of idem's"

// A key whose Redis entry idem did not write fails with a clear error,
// and is left as it was.
func TestForeignEntryIsReportedAndLeftAlone(t *testing.T) {
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t, rdb)
	ctx := context.Background()
	for _, quick := range []bool{true, false} {
		t.Run(fmt.Sprintf("quick claims %v", quick), func(t *testing.T) {
			be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
			require.NoError(t, err)
			defer be.Close()
			if !quick {
				idemredis.ScriptClaimsOnly(be)
			}
			key := []byte("foreign")
			rkey := idemredis.RedisKey(be, key)
			require.NoError(t, rdb.Set(ctx, rkey, foreignValue, 0).Err())

			_, err = be.Claim(ctx, key, backend.ClaimRequest{Value: []byte("x"), Lease: time.Minute, TTL: time.Hour})
			assert.ErrorContains(t, err, "malformed entry")
			_, _, err = be.Get(ctx, key)
			assert.ErrorContains(t, err, "malformed entry")
			assert.ErrorContains(t, be.Complete(ctx, key, 12345, []byte("v"), time.Hour), "malformed entry")
			assert.ErrorContains(t, be.Release(ctx, key, 12345), "malformed entry")
			assert.ErrorContains(t, be.Renew(ctx, key, 12345, time.Minute), "malformed entry")
			got, err := rdb.Get(ctx, rkey).Result()
			require.NoError(t, err)
			assert.Equal(t, foreignValue, got)
		})
	}
}

// The calls of concurrent callers share one script call; a key whose
// entry idem did not write fails alone, and the others get their replies.
func TestForeignEntryFailsOnlyItsOwnCallOfABatch(t *testing.T) {
	rdb := redistest.Client(t)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: redistest.Prefix(t, rdb)})
	require.NoError(t, err)
	defer be.Close()
	ctx := context.Background()
	foreign := []byte("foreign")
	require.NoError(t, rdb.Set(ctx, idemredis.RedisKey(be, foreign), foreignValue, 0).Err())

	// held claims a key of its own for an operation that needs an owner.
	held := func(name string) ([]byte, string) {
		key := []byte("held-" + name)
		res, err := be.Claim(ctx, key, backend.ClaimRequest{Value: []byte("x"), Lease: time.Minute, TTL: time.Hour})
		require.NoError(t, err)
		require.NotZero(t, res.Owner)
		return key, strconv.FormatUint(res.Owner, 10)
	}
	for _, tc := range []struct {
		name string
		key  func() ([]byte, []any)
		want any // the other key's reply
	}{
		{"claim", func() ([]byte, []any) {
			return []byte("new"), []any{"x", 60000, 3600000, "0", "0", ""}
		}, nil},
		{"get", func() ([]byte, []any) { k, _ := held("get"); return k, nil }, nil},
		{"watch", func() ([]byte, []any) { k, _ := held("watch"); return k, nil }, int64(1)},
		{"renew", func() ([]byte, []any) { k, o := held("renew"); return k, []any{o, 60000} }, int64(1)},
		{"complete", func() ([]byte, []any) { k, o := held("complete"); return k, []any{o, "v", 3600000} }, int64(1)},
		{"release", func() ([]byte, []any) { k, o := held("release"); return k, []any{o} }, int64(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, args := tc.key()
			foreignArgs := args
			if tc.name == "claim" {
				foreignArgs = []any{"y", 60000, 3600000, "0", "0", ""}
			}
			replies, errs := idemredis.SendTogether(be, tc.name, [][]byte{foreign, key, foreign}, [][]any{foreignArgs, args, foreignArgs})
			for _, i := range []int{0, 2} {
				assert.ErrorContains(t, errs[i], "malformed entry")
				assert.Nil(t, replies[i])
			}
			require.NoError(t, errs[1])
			if tc.want != nil {
				assert.Equal(t, tc.want, replies[1])
			} else {
				assert.IsType(t, []any{}, replies[1])
			}
			got, err := rdb.Get(ctx, idemredis.RedisKey(be, foreign)).Result()
			require.NoError(t, err)
			assert.Equal(t, foreignValue, got)
		})
	}
}
