package idem

import (
	"time"
)

// OpenWithProcessClock is Open in a process whose own clock is wall, as
// if the machine's clock were set differently.
func OpenWithProcessClock(opts Options, wall func() time.Time) (*Store, error) {
	return open(opts, wall)
}
