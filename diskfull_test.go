//go:build linux

package idem

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFullDisk fills a small tmpfs with a store. Without the guard Badger
// would kill the process with SIGBUS when a memory-mapped write finds the
// disk full; with it the caller gets ErrDiskFull, nothing acknowledged is
// lost, and writes resume once the file system has room again. It needs
// root, to mount the file system.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })

	ctx := testCtx(t)
	dir := filepath.Join(mnt, "store")
	st, err := Open(Options{Dir: dir, MinFreeDisk: 48 << 20, GCInterval: -1, CacheBytes: -1})
	require.NoError(t, err)
	defer st.Close()
	sc := scopeTest(t, st, "s", ScopeOptions{})
	big := strings.Repeat("x", 4000)
	acked := 0
	for ; acked < 100_000; acked++ {
		_, err = sc.Do(ctx, fmt.Sprint("k", acked), nil, value(new(int), big))
		if err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrDiskFull, "the disk fills up and the caller is told")
	t.Logf("%d results stored before the guard stopped new keys", acked)
	require.Positive(t, acked)
	for i := range acked {
		res, err := sc.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "ran again"))
		require.NoError(t, err, "replays keep working on a full disk")
		require.Equal(t, big, string(res.Value))
	}

	out, err := exec.Command("mount", "-o", "remount,size=256m", mnt).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Eventually(t, func() bool {
		_, err := sc.Do(ctx, "after", nil, value(new(int), "v"))
		return err == nil || !errors.Is(err, ErrDiskFull)
	}, 5*time.Second, 10*time.Millisecond, "writes resume once there is room")
	_, err = sc.Do(ctx, "after", nil, value(new(int), "v"))
	assert.NoError(t, err)
}
