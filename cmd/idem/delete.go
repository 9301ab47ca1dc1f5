package main

import (
	"context"
	"fmt"
	"io"
)

func runDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("delete", "idem delete [-dir DIR | -url URL] -scope S [-tenant T] KEY\n\nThe next call with the key runs again. A running process's store needs -url and an admin handler with mutations allowed.\n\nexample:\n  idem delete -dir /var/lib/orders/idem -scope payments -tenant acct_42 order-1001", stderr)
	var t target
	t.register(fs)
	scope := fs.String("scope", "", "the key's scope (required)")
	tenant := fs.String("tenant", "", "the key's tenant")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *scope == "" || fs.NArg() != 1 {
		return usagef("delete needs -scope and one KEY")
	}
	src, err := t.open(true)
	if err != nil {
		return err
	}
	defer src.close()
	if err := src.delete(ctx, *scope, *tenant, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s\n", escape(fs.Arg(0)))
	return nil
}
