package adminapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every field of a Filter and a Key comes back from its query as it went.
func TestQueriesRoundTrip(t *testing.T) {
	for _, f := range []Filter{
		{},
		{Scope: "s", Tenant: "t\xff", State: "orphaned", Prefix: "a&b=c", Expired: true, Values: true, Limit: 7},
	} {
		got, err := ParseFilter(f.Query())
		require.NoError(t, err)
		assert.Equal(t, f, got)
	}
	k := Key{Scope: "s", Tenant: "", Key: "k y/\x00"}
	assert.Equal(t, k, ParseKey(k.Query()))
}

func TestBadLimit(t *testing.T) {
	q := Filter{}.Query()
	q.Set("limit", "-1")
	_, err := ParseFilter(q)
	assert.Error(t, err)
}
