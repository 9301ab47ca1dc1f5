package retry

import (
	"regexp"
	"testing"
	"time"
)

func TestBackoffStaysUnderItsCeiling(t *testing.T) {
	for n := 1; n <= 40; n++ {
		ceiling := min(10*time.Millisecond<<(n-1), time.Second)
		if n > 20 {
			ceiling = time.Second
		}
		var most time.Duration
		for range 200 {
			d := Backoff(n, 10*time.Millisecond, time.Second)
			if d < 0 || d > ceiling {
				t.Fatalf("Backoff(%d) = %v, outside [0, %v]", n, d, ceiling)
			}
			most = max(most, d)
		}
		if most < ceiling/2 {
			t.Errorf("Backoff(%d): the longest of 200 waits was %v, under half of %v: not spread over the range", n, most, ceiling)
		}
	}
}

func TestUUIDv4(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		u := UUIDv4()
		if !form.MatchString(u) {
			t.Fatalf("%q is not a version 4 UUID", u)
		}
		if seen[u] {
			t.Fatalf("%q twice", u)
		}
		seen[u] = true
	}
}
