package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/idemkit/idem"
)

const tortureUsage = `idem torture [-rounds 20] [-keys 2000] [-goroutines 8] [-sync] [-min-kill 20ms] [-max-kill 400ms] [-dir DIR] [-json]

Runs a child process that calls Do on a shared set of keys from several
goroutines, while short-lived records of another scope are written and
collected, kills it with SIGKILL at a random moment, reopens the store, and
repeats. Every execution of a function and every acknowledged result is
appended to a ledger file (fsynced) outside the store. At the end it checks:
no acknowledged result is lost or changed, no key runs twice under
OrphanReport, and under OrphanRerun a key runs again only after a crash
interrupted it (never after its result was acknowledged). Exit status 1 on
any violation.

example:
  idem torture -rounds 50 -sync`

// tortureChildEnv carries a child's JSON config; a process started with it
// runs tortureChild instead of its command line, before anything else:
// main does so in the idem binary, TestMain in its tests.
const tortureChildEnv = "IDEM_TORTURE_CHILD"

type tortureConfig struct {
	Dir        string `json:"dir"`
	Ledger     string `json:"ledger"`
	Keys       int    `json:"keys"`
	Goroutines int    `json:"goroutines"`
	Sync       bool   `json:"sync"`
	Seed       uint64 `json:"seed"`
}

// tortureReport is what a torture run found.
type tortureReport struct {
	Rounds              int            `json:"rounds"`
	Executions          int            `json:"executions"`
	Acknowledged        int            `json:"acknowledged"`
	OutcomeUnknown      int            `json:"outcome_unknown"`
	Reruns              map[string]int `json:"reruns"` // per scope: keys that ran more than once
	AcknowledgedLost    int            `json:"acknowledged_lost"`
	DoubleAfterAck      int            `json:"double_executions_after_ack"`
	DoubleUnderReport   int            `json:"double_executions_under_report"`
	StuckInProgress     int            `json:"stuck_in_progress"`
	Orphans             int            `json:"orphans"` // claims under OrphanReport whose process was killed
	ViolationsByExample []string       `json:"violations,omitempty"`
}

func (r *tortureReport) violations() int {
	return r.AcknowledgedLost + r.DoubleAfterAck + r.DoubleUnderReport + r.StuckInProgress
}

// The scopes a torture run uses, one per orphan policy.
var tortureScopes = map[string]idem.ScopeOptions{
	"report": {Orphans: idem.OrphanReport, OrphanTTL: time.Hour},
	"rerun":  {Orphans: idem.OrphanRerun},
}

func runTorture(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("torture", tortureUsage, stderr)
	rounds := fs.Int("rounds", 20, "child processes to kill")
	keys := fs.Int("keys", 2000, "keys shared by the goroutines")
	goroutines := fs.Int("goroutines", 8, "goroutines calling Do in the child")
	sync := fs.Bool("sync", false, "SyncWrites")
	minKill := fs.Duration("min-kill", 20*time.Millisecond, "shortest time before a kill")
	maxKill := fs.Duration("max-kill", 400*time.Millisecond, "longest time before a kill")
	dir := fs.String("dir", "", "work directory (default: a new temporary one, removed after)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rounds < 1 || *keys < 1 || *goroutines < 1 || *minKill <= 0 || *maxKill < *minKill || fs.NArg() > 0 {
		return usagef("torture needs positive -rounds, -keys, -goroutines and 0 < -min-kill <= -max-kill")
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "idem-torture-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}
	cfg := tortureConfig{Dir: filepath.Join(*dir, "store"), Ledger: filepath.Join(*dir, "ledger"), Keys: *keys, Goroutines: *goroutines, Sync: *sync}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for round := range *rounds {
		cfg.Seed = uint64(round)
		wait := *minKill + time.Duration(rand.Int64N(int64(*maxKill-*minKill)+1))
		if err := tortureRound(ctx, self, cfg, wait); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "round %d of %d: child killed after %v\n", round+1, *rounds, wait.Round(time.Millisecond))
		}
	}
	rep, err := checkTorture(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Rounds = *rounds
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "rounds %d, executions %d, acknowledged %d, orphans left under report %d (answered outcome-unknown %d times), keys rerun after a crash %d\n",
			rep.Rounds, rep.Executions, rep.Acknowledged, rep.Orphans, rep.OutcomeUnknown, rep.Reruns["rerun"])
		fmt.Fprintf(stdout, "acknowledged results lost %d, executions after an acknowledgement %d, double executions under report %d, stuck in progress %d\n",
			rep.AcknowledgedLost, rep.DoubleAfterAck, rep.DoubleUnderReport, rep.StuckInProgress)
		for _, v := range rep.ViolationsByExample {
			fmt.Fprintln(stdout, "  violation:", v)
		}
		fmt.Fprintln(stdout, "(an execution is a function run; an acknowledgement is a Do that returned a result, a replay included, so there may be more of them)")
		if n := rep.violations(); n > 0 {
			fmt.Fprintf(stdout, "verdict: %d violations\n", n)
		} else {
			fmt.Fprintln(stdout, "verdict: nothing lost, nothing run twice")
		}
	}
	if n := rep.violations(); n > 0 {
		return fmt.Errorf("torture: %d violations", n)
	}
	return nil
}

// tortureRound runs one child and kills it after wait (or once it dies).
func tortureRound(ctx context.Context, self string, cfg tortureConfig, wait time.Duration) error {
	b, _ := json.Marshal(cfg)
	cmd := exec.CommandContext(ctx, self) // the environment makes it a child (see main)
	cmd.Env = append(os.Environ(), tortureChildEnv+"="+string(b))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	timer := time.AfterFunc(wait, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	defer timer.Stop()
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
		return nil
	}
	return fmt.Errorf("child ended by itself (%v): %s", err, out.String())
}

// tortureChild is the child process: Do on random keys until killed.
func tortureChild(cfg tortureConfig) error {
	ledger, err := os.OpenFile(cfg.Ledger, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var mu sync.Mutex // one line per write, synced
	logLine := func(format string, args ...any) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprintf(ledger, format+"\n", args...); err != nil {
			return err
		}
		return ledger.Sync()
	}
	st, err := idem.Open(idem.Options{Dir: cfg.Dir, SyncWrites: cfg.Sync})
	if err != nil {
		return err
	}
	epoch := st.Epoch()
	scopes := map[string]*idem.Scope{}
	for name, o := range tortureScopes {
		if scopes[name], err = st.Scope(name, o); err != nil {
			return err
		}
	}
	errc := make(chan error, cfg.Goroutines+2)
	// Beside the checked scopes, records of a tenth of a second are
	// written and collected all along (deleted, the memtables flushed,
	// the levels compacted), so that kills also land in collections; they
	// are not checked, since an expired key may rightly run again.
	brief, err := st.Scope("brief", idem.ScopeOptions{TTL: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	go func() {
		value := make([]byte, 200) // in the value log
		for n := 0; ; n++ {
			_, err := brief.Do(context.Background(), fmt.Sprint("b", n%1000), nil, func(context.Context) ([]byte, error) { return value, nil })
			if err != nil {
				errc <- fmt.Errorf("brief: %w", err)
				return
			}
		}
	}()
	go func() {
		for {
			if _, err := st.GC(context.Background()); err != nil {
				errc <- fmt.Errorf("gc: %w", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for g := range cfg.Goroutines {
		go func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(g)))
			for n := 0; ; n++ {
				scope := []string{"report", "rerun"}[rng.IntN(2)]
				key := fmt.Sprint("k", rng.IntN(cfg.Keys))
				exec := fmt.Sprintf("e%d.%d.%d", epoch, g, n)
				res, err := scopes[scope].Do(context.Background(), key, nil, func(context.Context) ([]byte, error) {
					if err := logLine("exec %s %s %s", scope, key, exec); err != nil {
						return nil, err
					}
					time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond) // the side effect takes a while
					return []byte(exec), nil
				})
				switch {
				case errors.Is(err, idem.ErrOutcomeUnknown):
					err = logLine("unknown %s %s", scope, key)
				case err == nil:
					err = logLine("ack %s %s %s", scope, key, res.Value)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	return <-errc
}

// checkTorture reads the ledger and the store and counts violations.
func checkTorture(ctx context.Context, cfg tortureConfig) (*tortureReport, error) {
	f, err := os.Open(cfg.Ledger)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep := &tortureReport{Reruns: map[string]int{}}
	execs := map[string]int{}    // scope/key -> executions
	acked := map[string]string{} // scope/key -> acknowledged value
	ackedAt := map[string]bool{} // scope/key has been acknowledged before the current line
	violation := func(format string, args ...any) {
		if len(rep.ViolationsByExample) < 10 {
			rep.ViolationsByExample = append(rep.ViolationsByExample, fmt.Sprintf(format, args...))
		}
	}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) < 3 {
			continue // a line cut by the kill
		}
		id := fields[1] + "/" + fields[2]
		switch fields[0] {
		case "exec":
			rep.Executions++
			execs[id]++
			if ackedAt[id] {
				rep.DoubleAfterAck++
				violation("%s ran again after its result was acknowledged", id)
			}
			if execs[id] == 2 {
				if fields[1] == "report" {
					rep.DoubleUnderReport++
					violation("%s ran twice under OrphanReport", id)
				} else {
					rep.Reruns[fields[1]]++
				}
			}
		case "ack":
			if len(fields) < 4 {
				continue
			}
			rep.Acknowledged++
			if prev, ok := acked[id]; ok && prev != fields[3] {
				rep.AcknowledgedLost++
				violation("%s acknowledged %s, later %s", id, prev, fields[3])
			}
			acked[id], ackedAt[id] = fields[3], true
		case "unknown":
			rep.OutcomeUnknown++
		}
	}
	if err := lines.Err(); err != nil {
		return nil, err
	}

	st, err := idem.Open(idem.Options{Dir: cfg.Dir, ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for id, value := range acked {
		scope, key, _ := strings.Cut(id, "/")
		r, err := st.Lookup(ctx, scope, "", key)
		if err != nil || r.State != "completed" || string(r.Value) != value {
			rep.AcknowledgedLost++
			violation("%s acknowledged %s, store has %q %s (%v)", id, value, r.Value, r.State, err)
		}
	}
	err = st.Records(ctx, idem.RecordFilter{State: "orphaned", Expired: true}, func(r idem.RecordInfo) error {
		if r.Scope == "rerun" { // OrphanRerun never persists a claim
			rep.StuckInProgress++
			violation("%s/%s left in progress under OrphanRerun", r.Scope, r.Key)
		} else {
			rep.Orphans++
		}
		return nil
	})
	return rep, err
}

// runTortureChildFromEnv runs the child when this process is one, and
// reports whether it was.
func runTortureChildFromEnv() bool {
	raw := os.Getenv(tortureChildEnv)
	if raw == "" {
		return false
	}
	var cfg tortureConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "torture child:", err)
		os.Exit(1)
	}
	err := tortureChild(cfg)
	fmt.Fprintln(os.Stderr, "torture child:", err)
	os.Exit(1)
	return true
}
