package retry

import (
	"context"
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

func TestWaitGivesUpWhenTheAnswerAsksTooMuch(t *testing.T) {
	ctx := context.Background()
	wait, ok := Wait(ctx, 1, time.Millisecond, time.Second, 200*time.Millisecond)
	if !ok || wait < 200*time.Millisecond {
		t.Fatalf("Wait = %v, %v: want at least the hint", wait, ok)
	}
	if _, ok := Wait(ctx, 1, time.Millisecond, time.Second, 2*time.Second); ok {
		t.Fatal("a hint beyond the ceiling must be refused")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, ok := Wait(short, 1, time.Millisecond, time.Second, 500*time.Millisecond); ok {
		t.Fatal("a wait beyond the deadline must be refused")
	}
	cancel()
	if err := Sleep(short, time.Hour); err == nil {
		t.Fatal("Sleep must end with its context")
	}
}
