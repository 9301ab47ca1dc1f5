//go:build unix

package idem

import (
	"io/fs"
	"syscall"
)

// allocated is the disk space a file occupies: for a sparse file, less
// than its length.
func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
