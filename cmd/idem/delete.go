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
	var k keyArgs
	k.register(fs)
	src, err := t.openForKey(fs, args, &k, true)
	if err != nil {
		return err
	}
	defer src.close()
	if err := src.delete(ctx, k.scope, k.tenant, k.key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s\n", escape(k.key))
	return nil
}
