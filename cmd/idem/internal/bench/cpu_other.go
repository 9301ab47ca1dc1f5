//go:build !unix

package bench

import "time"

// processCPU is 0 where the platform gives no process CPU time.
func processCPU() time.Duration { return 0 }
