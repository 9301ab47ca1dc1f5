//go:build linux

package idem

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fillChildEnv tells TestDiskFillChild its directory and MinFreeDisk:
// "DIR:BYTES".
const fillChildEnv = "IDEM_FILL_CHILD"

// TestDiskFillChild is the child process of TestDiskFilledByAnotherProcess;
// run on its own it returns at once. Four goroutines store new keys of
// 2 KiB as fast as they can until stdin closes; then it checks that new
// keys are taken again, reports, and exits 0, unless the full disk killed
// it first.
func TestDiskFillChild(t *testing.T) {
	dir, minFree, ok := strings.Cut(os.Getenv(fillChildEnv), ":")
	if !ok {
		return
	}
	margin, _ := strconv.ParseInt(minFree, 10, 64)
	st, err := Open(Options{Dir: dir, GCInterval: -1, MinFreeDisk: margin})
	if err != nil {
		fmt.Println("fail open:", err)
		os.Exit(1)
	}
	sc, _ := st.Scope("s", ScopeOptions{})
	w := startKeyWriters(sc, ErrDiskFull)
	fmt.Println("writing")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // the parent has filled the disk and emptied it again
	w.stop()
	after := storeNewKeys(sc, "after-", 100)
	fmt.Println("acked", w.acked, "full", w.expected.Load(), "other", w.others.Load(), "after", after)
	_ = st.Close()
}

// fillResult is what one round of another process filling the disk did.
type fillResult struct {
	survived bool
	report   string
}

// fillDisk runs TestDiskFillChild on a fresh tmpfs of size bytes with the
// given MinFreeDisk, and once it writes, fills the file system from this
// process at rate bytes per second (0: as fast as it goes), holds it full
// for a second, and empties it again.
func fillDisk(t *testing.T, size, margin, rate int64) fillResult {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprint("size=", size), "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	defer func() { _ = exec.Command("umount", "-l", mnt).Run() }()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", fillChildEnv, filepath.Join(mnt, "store"), margin))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	deadline := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	lines := bufio.NewScanner(out)
	require.True(t, lines.Scan(), "the child starts: %s", stderr.String())
	require.Equal(t, "writing", lines.Text())
	time.Sleep(500 * time.Millisecond)

	filler, err := os.Create(filepath.Join(mnt, "filler"))
	require.NoError(t, err)
	chunk := make([]byte, 1<<20)
	start := time.Now()
	written := int64(0)
	for {
		if _, err := filler.Write(chunk); err != nil {
			break // full
		}
		written += int64(len(chunk))
		if rate > 0 {
			if ahead := time.Duration(written*int64(time.Second)/rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	time.Sleep(time.Second)
	_ = filler.Close()
	_ = os.Remove(filler.Name())
	_, _ = stdin.Write([]byte("go on\n"))
	var report string
	for lines.Scan() {
		report += lines.Text()
	}
	err = cmd.Wait()
	if err != nil {
		report += fmt.Sprintf(" (%v; %s)", err, firstLine(stderr.String()))

	}
	return fillResult{survived: err == nil, report: report}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// TestDiskFilledByAnotherProcess measures whether a store survives another
// process filling its file system to the last byte while it writes, for
// two margins (MinFreeDisk) and four speeds of the filler, five rounds
// each, on a 1 GiB tmpfs. The guard stops new keys at the margin, but
// Badger's compactions go on writing new tables through memory-mapped
// files for seconds after, and one that writes once the disk is full
// kills the process with SIGBUS: the store survives only if the filler
// takes longer than that to eat the margin (see the table in
// docs/guarantees.md). In the rounds that survive, new keys are taken again once
// the space is back. It is a measurement, run with IDEM_FILL_SWEEP=1, and
// needs root, to mount a size-limited tmpfs.
func TestDiskFilledByAnotherProcess(t *testing.T) {
	if os.Getenv("IDEM_FILL_SWEEP") == "" {
		t.Skip("a measurement of several minutes: set IDEM_FILL_SWEEP=1")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root")
	}
	for _, margin := range []int64{64 << 20, 256 << 20} {
		for _, rate := range []int64{25e6, 100e6, 400e6, 0} {
			survived := 0
			const rounds = 5
			for range rounds {
				r := fillDisk(t, 1<<30, margin, rate)
				if r.survived {
					survived++
					assert.Contains(t, r.report, "after 100", "new keys are taken once the space is back")
				}
			}
			t.Logf("MinFreeDisk %d MiB, filler %d MB/s (0: as fast as it goes): survived %d of %d", margin>>20, rate/1e6, survived, rounds)
		}
	}
}
