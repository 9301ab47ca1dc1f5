package bench

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestKeysAreFmtsKeys: the keys are what fmt would print, KeyLen bytes.
func TestKeysAreFmtsKeys(t *testing.T) {
	k, err := NewKeys(Dup90, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{0, 1, 9, 10, 99_999, 1 << 40, math.MaxInt64, 9_999_999_999_999_999_999} {
		got := k.key(nil, "-new-", n)
		assert.Equal(t, fmt.Sprintf("%s-new-%019d", k.prefix, n), string(got))
		assert.Len(t, got, KeyLen)
	}
	assert.Equal(t, fmt.Sprintf("%s-old-%019d", k.prefix, 42), string(k.old(nil, 42)))
}
