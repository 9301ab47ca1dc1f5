package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

const getUsage = `idem get [-dir DIR | -url URL] -scope S [-tenant T] [-json] KEY

example:
  idem get -dir /var/lib/orders/idem -scope payments -tenant acct_42 order-1001`

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("get", getUsage, stderr)
	var t target
	t.register(fs)
	var k keyArgs
	k.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	src, err := t.openForKey(fs, args, &k, false)
	if err != nil {
		return err
	}
	defer src.close()
	r, err := src.lookup(ctx, k.scope, k.tenant, k.key)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	value := string(r.Value)
	if !utf8.Valid(r.Value) {
		value = "hex " + hex.EncodeToString(r.Value)
	}
	fmt.Fprintf(stdout, "scope:       %s\ntenant:      %s\nkey:         %s\nstate:       %s\nepoch:       %d\n",
		r.Scope, escape(r.Tenant), escape(r.Key), state(r), r.Epoch)
	fmt.Fprintf(stdout, "created:     %s\nexpires:     %s\nfingerprint: %s\nvalue bytes: %d\nvalue:       %s\n",
		r.CreatedAt.UTC().Format(time.RFC3339Nano), r.ExpiresAt.UTC().Format(time.RFC3339Nano),
		hex.EncodeToString(r.Fingerprint), r.ValueBytes, value)
	return nil
}
