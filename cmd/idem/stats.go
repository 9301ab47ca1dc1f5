package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/idemkit/idem"
)

// expiryBuckets are the columns of the expiry histogram.
var expiryBuckets = []struct {
	name  string
	limit time.Duration
}{
	{"expired", 0}, {"<1m", time.Minute}, {"<1h", time.Hour}, {"<1d", 24 * time.Hour},
	{"<7d", 7 * 24 * time.Hour}, {"later", 1<<63 - 1},
}

// storeStats is what idem stats prints.
type storeStats struct {
	Records   int64                      `json:"records"`
	Scopes    map[string]idem.ScopeStats `json:"scopes"`
	States    map[string]int64           `json:"states"`
	Expiry    map[string]int64           `json:"expiry"`
	DiskBytes int64                      `json:"disk_bytes"`
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("stats", "idem stats [-dir DIR | -url URL] [-json]\n\nexample:\n  idem stats -url http://127.0.0.1:9090", stderr)
	var t target
	t.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	src, err := t.openWithoutArgs(fs, args, false)
	if err != nil {
		return err
	}
	defer src.close()
	s, err := src.stats(ctx)
	if err != nil {
		return err
	}
	out := storeStats{Scopes: s.Scopes, States: map[string]int64{}, Expiry: map[string]int64{}, DiskBytes: s.DiskBytes}
	now := time.Now()
	err = src.records(ctx, idem.RecordFilter{Expired: true}, func(r idem.RecordInfo) error {
		out.Records++
		out.States[string(r.State)]++
		left := r.ExpiresAt.Sub(now)
		for _, b := range expiryBuckets {
			if r.Expired && b.limit == 0 || !r.Expired && b.limit > 0 && left < b.limit {
				out.Expiry[b.name]++
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "records\t%d\ndisk\t%s\n\nSCOPE\tKEYS\tBYTES\n", out.Records, human(out.DiskBytes))
	for _, name := range slices.Sorted(maps.Keys(out.Scopes)) {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", name, out.Scopes[name].Keys, human(out.Scopes[name].Bytes))
	}
	fmt.Fprintf(tw, "\nSTATE\tRECORDS\n")
	for _, name := range slices.Sorted(maps.Keys(out.States)) {
		fmt.Fprintf(tw, "%s\t%d\n", name, out.States[name])
	}
	fmt.Fprintf(tw, "\nEXPIRES\tRECORDS\n")
	for _, b := range expiryBuckets {
		fmt.Fprintf(tw, "%s\t%d\n", b.name, out.Expiry[b.name])
	}
	return tw.Flush()
}

// human formats a byte count.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
