package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemhttp"
)

const getUsage = `idem get [-dir DIR | -url URL] -scope S [-tenant T] [-raw] [-json] KEY

A value stored by the idemhttp middleware shows as the response a retry is
sent (status, headers, body); -raw shows the stored bytes instead.

example:
  idem get -dir /var/lib/orders/idem -scope payments -tenant acct_42 order-1001`

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("get", getUsage, stderr)
	var t target
	t.register(fs)
	var k keyArgs
	k.register(fs)
	raw := fs.Bool("raw", false, "show the value as stored, not decoded as an HTTP response")
	asJSON := fs.Bool("json", false, "print the record as JSON (the value in base64)")
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
	fmt.Fprintf(stdout, "scope:       %s\ntenant:      %s\nkey:         %s\nstate:       %s\nepoch:       %d\n",
		r.Scope, escape(r.Tenant), escape(r.Key), state(r), r.Epoch)
	fmt.Fprintf(stdout, "created:     %s\nexpires:     %s\nfingerprint: %s\nvalue bytes: %d\n",
		r.CreatedAt.UTC().Format(time.RFC3339Nano), r.ExpiresAt.UTC().Format(time.RFC3339Nano),
		hex.EncodeToString(r.Fingerprint), r.ValueBytes)
	if resp, err := idemhttp.DecodeResponse(r.Value); err == nil && !*raw && r.State == idem.StateCompleted {
		printResponse(stdout, resp)
		return nil
	}
	fmt.Fprintf(stdout, "value:       %s\n", bytesText(r.Value))
	return nil
}

// printResponse shows a stored HTTP response as a retry receives it.
func printResponse(w io.Writer, resp idemhttp.StoredResponse) {
	if !resp.Replayable {
		fmt.Fprintf(w, "response:    status %d, not replayable (streamed, hijacked or too large): a retry gets 409\n", resp.Status)
		return
	}
	fmt.Fprintf(w, "response:    %d %s\n", resp.Status, http.StatusText(resp.Status))
	for _, name := range slices.Sorted(maps.Keys(resp.Header)) {
		for _, v := range resp.Header[name] {
			fmt.Fprintf(w, "  %s: %s\n", name, v)
		}
	}
	fmt.Fprintf(w, "body:        %s\n", bytesText(resp.Body))
}

// bytesText shows b as text, or in hex if it is not UTF-8.
func bytesText(b []byte) string {
	if !utf8.Valid(b) {
		return "hex " + hex.EncodeToString(b)
	}
	return string(b)
}
