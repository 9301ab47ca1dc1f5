//go:build unix

package idembadger

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

// freeSpace is the space left for unprivileged writes on dir's file
// system; ok is false where it cannot be told.
func freeSpace(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
