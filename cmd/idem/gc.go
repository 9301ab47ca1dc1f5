package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gc", "idem gc [-dir DIR | -url URL] [-json]\n\nA running process's store needs -url and an admin handler with mutations allowed.\n\nexample:\n  idem gc -dir /var/lib/orders/idem", stderr)
	var t target
	t.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	src, err := t.openWithoutArgs(fs, args, true)
	if err != nil {
		return err
	}
	defer src.close()
	s, err := src.gc(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(s)
	}
	fmt.Fprintf(stdout, "scanned %d records, deleted %d expired (%s), %d live; disk %s -> %s in %v\n",
		s.Scanned, s.Deleted, human(s.DeletedBytes), s.Live, human(s.DiskBefore), human(s.DiskAfter), s.Duration.Round(1e6))
	return nil
}
