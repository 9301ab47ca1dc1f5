//go:build !unix

package idem

import "io/fs"

// allocated is the disk space a file occupies, here its length.
func allocated(info fs.FileInfo) int64 { return info.Size() }
