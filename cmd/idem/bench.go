package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/idemkit/idem/cmd/idem/internal/bench"
)

const benchUsage = `idem bench [-workload unique,dup90,hot] [-goroutines 1,8,64] [-duration 2s] [-value-size 256] [-sync] [-targets LIST] [-redis ADDR] [-json] [-cpuprofile FILE]

Runs concurrent check-and-set on idem (Do and Claim) and on the baselines
(naive Badger get-then-set, an in-memory sharded map) in fresh temporary
directories, and prints ops/s, latency and each row's ratio to the baselines.
With -redis, the targets are idem on the idemredis backend and raw go-redis
SET NX GET on that server instead (keys of their own, deleted afterwards).
With -postgres, they are idem on the idempg backend (idem-pg), the claim
users write by hand (pg-claim: INSERT ... ON CONFLICT DO NOTHING RETURNING,
then SELECT the row that was there), idempg.Do with a business INSERT in
its transaction (idem-pg-tx), and that INSERT alone (pg-insert, new keys
only), in tables of their own, dropped afterwards.
-targets may also name idem-append, Scope.DoAppend into a pooled buffer
(Do without the allocation of each replay's copy), badger-write, a blind db.Update{Set} per key, and
badger-ingest, blind writes of concurrent callers committed together with
conflict detection off: not check-and-sets, but what Badger's write alone
costs a new key, one by one and at its ingest ceiling (the unique workload
only). -cpuprofile writes a CPU profile of the whole run to FILE, for
go tool pprof: name one target to see where its time goes.
` + claimedLegend + "\n" + serverCPULegend + "\n" + ratioLegend + `

examples:
  idem bench -workload unique -goroutines 64 -duration 5s
  idem bench -redis 127.0.0.1:6379 -goroutines 64
  idem bench -postgres postgres://postgres@127.0.0.1/test -goroutines 64
  idem bench -workload unique -targets idem-do,badger-naive,badger-write,badger-ingest`

// benchRow is one printed row.
type benchRow struct {
	Target     string  `json:"target"`
	Workload   string  `json:"workload"`
	Goroutines int     `json:"goroutines"`
	Sync       bool    `json:"sync"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	Claimed    float64 `json:"claimed"`
	CPUPerOpUs float64 `json:"cpu_per_op_us"`
	// ServerCPUPerOpUs is the Redis server's CPU per call (-redis only).
	ServerCPUPerOpUs float64 `json:"server_cpu_per_op_us,omitempty"`
	VsBadger         float64 `json:"vs_badger_naive,omitempty"`
	VsMemory         float64 `json:"vs_mem_sharded,omitempty"`
	VsRedis          float64 `json:"vs_redis_setnx,omitempty"`
	VsPG             float64 `json:"vs_pg_claim,omitempty"`
	VsInsert         float64 `json:"vs_pg_insert,omitempty"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("bench", benchUsage, stderr)
	workloads := fs.String("workload", "unique,dup90,hot", "workloads, comma-separated")
	goroutines := fs.String("goroutines", "1,8,64", "goroutine counts, comma-separated")
	duration := fs.Duration("duration", 2*time.Second, "time per row")
	valueSize := fs.Int("value-size", 256, "value bytes")
	sync := fs.Bool("sync", false, "SyncWrites for idem and Badger")
	targets := fs.String("targets", "", "targets, comma-separated (default: idem-do,idem-claim,badger-naive,mem-sharded; with -redis: idem-redis,redis-setnx)")
	redisAddr := fs.String("redis", "", "a Redis server `address` for the Redis targets")
	pgURL := fs.String("postgres", "", "a PostgreSQL database `URL` for the Postgres targets (tables of their own, dropped afterwards)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to `file`")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("bench takes no arguments")
	}
	if *duration <= 0 || *valueSize < 0 {
		return usagef("-duration must be positive and -value-size not negative")
	}
	var gs []int
	for _, s := range strings.Split(*goroutines, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usagef("-goroutines %q: want positive whole numbers", *goroutines)
		}
		gs = append(gs, n)
	}
	kinds := bench.Kinds
	switch {
	case *redisAddr != "":
		kinds = bench.RedisKinds
	case *pgURL != "":
		kinds = bench.PostgresKinds
	}
	if *targets != "" {
		kinds = nil
		for _, s := range strings.Split(*targets, ",") {
			k := bench.Kind(strings.TrimSpace(s))
			if !slices.Contains(slices.Concat(bench.Kinds, bench.RedisKinds, bench.More, bench.PostgresKinds), k) {
				return usagef("-targets: unknown target %q", k)
			}
			if slices.Contains(bench.RedisKinds, k) && *redisAddr == "" {
				return usagef("-targets: %s needs -redis", k)
			}
			if slices.Contains(bench.PostgresKinds, k) && *pgURL == "" {
				return usagef("-targets: %s needs -postgres", k)
			}
			kinds = append(kinds, k)
		}
	}
	var ws []bench.Workload
	for _, s := range strings.Split(*workloads, ",") {
		w := bench.Workload(strings.TrimSpace(s))
		if w != bench.Unique && w != bench.Dup90 && w != bench.Hot {
			return usagef("-workload: unknown workload %q", w)
		}
		ws = append(ws, w)
	}

	// A ratio column for each baseline that runs.
	var baselines []bench.Kind
	for _, b := range []bench.Kind{bench.BadgerNaive, bench.MemSharded, bench.RedisSetNX, bench.PGClaim, bench.PGInsert} {
		if slices.Contains(kinds, b) {
			baselines = append(baselines, b)
		}
	}
	if *cpuProfile != "" {
		stop, perr := profileCPU(*cpuProfile)
		if perr != nil {
			return perr
		}
		defer func() { err = errors.Join(err, stop()) }() // the named result, so that a failed write is reported
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, w := range ws {
		for _, g := range gs {
			if !*asJSON { // a table per group, printed as soon as it is measured
				fmt.Fprint(tw, "target\tworkload\tgoroutines\tops/s\tcpu/op\t")
				if *redisAddr != "" {
					fmt.Fprint(tw, "server cpu/op\t")
				}
				fmt.Fprint(tw, "p50\tp99\tclaimed\t")
				for _, b := range baselines {
					fmt.Fprintf(tw, "× %s\t", b)
				}
				fmt.Fprintln(tw)
			}
			var rows []benchRow
			for _, k := range kinds {
				if !k.Fits(w) {
					continue
				}
				r, err := bench.Run(ctx, bench.Config{Kind: k, Workload: w, Goroutines: g, Duration: *duration, ValueSize: *valueSize,
					Sync: *sync && k.Syncs(), RedisAddr: *redisAddr, PostgresURL: *pgURL})
				if err != nil {
					return err
				}
				rows = append(rows, benchRow{
					Target: string(k), Workload: string(w), Goroutines: g, Sync: *sync,
					OpsPerSec: r.OpsPerSec, CPUPerOpUs: micros(r.CPUPerOp), ServerCPUPerOpUs: micros(r.ServerCPUPerOp), P50us: micros(r.P50), P99us: micros(r.P99), Claimed: r.Claimed,
				})
			}
			ratios(rows)
			for _, row := range rows {
				if *asJSON {
					if err := json.NewEncoder(stdout).Encode(row); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.1fµs\t", row.Target, row.Workload, row.Goroutines, row.OpsPerSec, row.CPUPerOpUs)
				if *redisAddr != "" {
					fmt.Fprintf(tw, "%s\t", serverCPU(row.ServerCPUPerOpUs))
				}
				fmt.Fprintf(tw, "%.1fµs\t%.1fµs\t%.1f%%\t", row.P50us, row.P99us, 100*row.Claimed)
				for _, b := range baselines {
					fmt.Fprintf(tw, "%s\t", ratio(row.vs(b)))
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	if !*asJSON {
		fmt.Fprintln(stdout, claimedLegend)
		if *redisAddr != "" {
			fmt.Fprintln(stdout, serverCPULegend)
		}
		if len(baselines) > 0 {
			fmt.Fprintln(stdout, ratioLegend)
		}
	}
	return nil
}

// The legend of the table's columns.
const (
	claimedLegend = "cpu/op: this process's CPU time (user and system, background work included; a server's not) per call.\n" +
		"claimed: the share of calls that found their key new and ran the work (the rest got a stored or running result)."
	serverCPULegend = "server cpu/op: the Redis server's CPU time (INFO cpu, user and system) per call, - if it refuses INFO; other clients of the server count too."
	ratioLegend     = "× B: the row's ops/s divided by baseline B's in the same workload and goroutines (above 1: faster than B)."
)

// serverCPU prints a server's CPU per call, "-" for a row without a server.
func serverCPU(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", us)
}

// ratios fills each row's ratio to the baselines of its group.
func ratios(rows []benchRow) {
	base := map[string]float64{}
	for _, r := range rows {
		base[r.Target] = r.OpsPerSec
	}
	for i := range rows {
		if b := base[string(bench.BadgerNaive)]; b > 0 {
			rows[i].VsBadger = rows[i].OpsPerSec / b
		}
		if m := base[string(bench.MemSharded)]; m > 0 && !rows[i].Sync {
			rows[i].VsMemory = rows[i].OpsPerSec / m
		}
		if r := base[string(bench.RedisSetNX)]; r > 0 {
			rows[i].VsRedis = rows[i].OpsPerSec / r
		}
		if p := base[string(bench.PGClaim)]; p > 0 {
			rows[i].VsPG = rows[i].OpsPerSec / p
		}
		if p := base[string(bench.PGInsert)]; p > 0 {
			rows[i].VsInsert = rows[i].OpsPerSec / p
		}
	}
}

// vs is the row's ratio to baseline b.
func (r benchRow) vs(b bench.Kind) float64 {
	switch b {
	case bench.BadgerNaive:
		return r.VsBadger
	case bench.MemSharded:
		return r.VsMemory
	case bench.RedisSetNX:
		return r.VsRedis
	case bench.PGClaim:
		return r.VsPG
	case bench.PGInsert:
		return r.VsInsert
	}
	return 0
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// profileCPU starts a CPU profile written to path; stop ends it and closes
// the file.
func profileCPU(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
