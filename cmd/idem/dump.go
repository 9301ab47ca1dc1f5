package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idemkit/idem"
)

const dumpUsage = `idem dump [-dir DIR | -url URL] [-scope S] [-tenant T] [-state STATE] [-prefix P] [-expired] [-limit N] [-values] [-json]

States: in_progress, orphaned, completed, failed, too_large, corrupt.
The table cuts keys, tenants and values longer than 48 characters, ending
them in "…"; -json and idem get show them whole.

examples:
  idem dump -dir /var/lib/orders/idem -scope payments -state orphaned
  idem dump -url http://127.0.0.1:9090 -json -limit 100 | jq .key`

func runDump(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dump", dumpUsage, stderr)
	var t target
	t.register(fs)
	var f idem.RecordFilter
	fs.StringVar(&f.Scope, "scope", "", "only this scope")
	fs.StringVar(&f.Tenant, "tenant", "", "only this tenant (with -scope)")
	stateName := fs.String("state", "", "only records in this state")
	fs.StringVar(&f.KeyPrefix, "prefix", "", "only keys with this prefix")
	fs.BoolVar(&f.Expired, "expired", false, "include expired records")
	fs.IntVar(&f.Limit, "limit", 0, "stop after N records (0: all)")
	fs.BoolVar(&f.Values, "values", false, "include values (base64 in -json)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	f.Tenant, f.KeyPrefix = unescape(f.Tenant), unescape(f.KeyPrefix)
	switch {
	case fs.NArg() > 0:
		return usagef("dump takes no arguments")
	case f.Limit < 0:
		return usagef("-limit must not be negative")
	case f.Tenant != "" && f.Scope == "":
		return usagef("-tenant needs -scope")
	}
	if *stateName != "" {
		s, err := idem.ParseRecordState(*stateName)
		if err != nil {
			return usagef("-state: %v", err)
		}
		f.State = s
	}
	src, err := t.open(false)
	if err != nil {
		return err
	}
	defer src.close()

	if *asJSON {
		enc := json.NewEncoder(stdout)
		return src.records(ctx, f, func(r idem.RecordInfo) error { return enc.Encode(r) })
	}
	// A table, flushed every few rows: a dump of millions of keys starts
	// printing at once and holds only a screenful. Its header comes with
	// the first row (or with none, at the end), so that a store that
	// cannot be read prints only its error.
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	header := "SCOPE\tTENANT\tKEY\tSTATE\tCREATED\tEXPIRES\tBYTES"
	if f.Values {
		header += "\tVALUE"
	}
	rows := 0
	err = src.records(ctx, f, func(r idem.RecordInfo) error {
		if rows == 0 {
			fmt.Fprintln(tw, header)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d", r.Scope, cell(escape(r.Tenant)), cell(escape(r.Key)), state(r),
			r.CreatedAt.UTC().Format(time.RFC3339), r.ExpiresAt.UTC().Format(time.RFC3339), r.ValueBytes)
		if f.Values {
			line += "\t" + cell(escape(string(r.Value)))
		}
		fmt.Fprintln(tw, line)
		if rows++; rows%256 == 0 {
			return tw.Flush()
		}
		return nil
	})
	if err == nil && rows == 0 {
		fmt.Fprintln(tw, header)
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// cellWidth is the most characters a key, tenant or value takes in the
// dump table; -json and get show them whole.
const cellWidth = 48

// cell cuts s to cellWidth characters, ending in "…" when it was cut, so
// that one long key does not widen every row.
func cell(s string) string {
	if utf8.RuneCountInString(s) <= cellWidth {
		return s
	}
	runes := []rune(s)
	return string(runes[:cellWidth-1]) + "…"
}

func state(r idem.RecordInfo) string {
	if r.Expired {
		return string(r.State) + " (expired)"
	}
	return string(r.State)
}

// escape quotes a string that is empty or holds anything but printable,
// non-space characters, so that every key shows as one unambiguous cell.
func escape(s string) string {
	if s == "" {
		return `""`
	}
	if !utf8.ValidString(s) {
		return strconv.QuoteToASCII(s) // invalid bytes as \x escapes, never as U+FFFD
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == '\\' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// unescape reads back what escape shows: a quoted string ("\xff") is
// unquoted, anything else is taken as it is. A key that itself starts
// with a double quote is shown quoted, so its shown form reads back too.
func unescape(s string) string {
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	return s
}
