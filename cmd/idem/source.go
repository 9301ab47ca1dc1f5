package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/internal/adminapi"
)

// source is a store as the commands see it: a directory opened here, or a
// live process's admin handler.
type source interface {
	records(ctx context.Context, f idem.RecordFilter, fn func(idem.RecordInfo) error) error
	lookup(ctx context.Context, scope, tenant, key string) (idem.RecordInfo, error)
	stats(ctx context.Context) (idem.Stats, error)
	gc(ctx context.Context) (idem.GCStats, error)
	delete(ctx context.Context, scope, tenant, key string) error
	close() error
}

// target holds the -dir, -url and -token flags.
type target struct{ dir, url, token string }

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.dir, "dir", "", "store directory of a stopped process")
	fs.StringVar(&t.url, "url", "", "admin handler URL of a running process")
	fs.StringVar(&t.token, "token", os.Getenv(adminapi.TokenEnv), "bearer token for -url (default $"+adminapi.TokenEnv+")")
}

// keyArgs are the flags and argument naming one record: -scope, -tenant
// and KEY.
type keyArgs struct{ scope, tenant, key string }

func (k *keyArgs) register(fs *flag.FlagSet) {
	fs.StringVar(&k.scope, "scope", "", "the key's scope (required)")
	fs.StringVar(&k.tenant, "tenant", "", "the key's tenant (quoted as dump shows it, if it is)")
}

// openForKey parses the flags of a command about one record and connects
// to the store.
func (t *target) openForKey(fs *flag.FlagSet, args []string, k *keyArgs, mutating bool) (source, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 1 && strings.HasPrefix(fs.Arg(1), "-"):
		return nil, usagef("%s: %s comes after KEY %q; flags go before KEY", fs.Name(), fs.Arg(1), fs.Arg(0))
	case k.scope == "" || fs.NArg() != 1:
		return nil, usagef("%s needs -scope and one KEY", fs.Name())
	}
	k.key, k.tenant = unescape(fs.Arg(0)), unescape(k.tenant)
	return t.open(mutating)
}

// openWithoutArgs parses the flags of a command that takes no arguments
// and connects to the store.
func (t *target) openWithoutArgs(fs *flag.FlagSet, args []string, mutating bool) (source, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("%s takes no arguments", fs.Name())
	}
	return t.open(mutating)
}

// open connects to the store. Reading commands open a directory without
// changing it; mutating ones open it for writing (it must be stopped).
func (t *target) open(mutating bool) (source, error) {
	switch {
	case (t.dir == "") == (t.url == ""):
		return nil, usagef("give exactly one of -dir and -url")
	case t.url != "":
		u, err := url.Parse(t.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, usagef("-url %q: want an http:// or https:// URL", t.url)
		}
		return &remote{base: strings.TrimSuffix(t.url, "/"), token: t.token, client: http.DefaultClient}, nil
	}
	if err := checkStoreDir(t.dir); err != nil {
		return nil, err
	}
	st, err := idem.Open(idem.Options{Dir: t.dir, ReadOnly: !mutating, GCInterval: -1})
	if errors.Is(err, idem.ErrLocked) {
		return nil, fmt.Errorf("%w: a running process holds it: stop it first, or use -url if it serves an admin endpoint", err)
	}
	if err != nil {
		return nil, err
	}
	return local{st}, nil
}

// checkStoreDir refuses a directory that holds no store, before anything
// opens it: opened for writing, it would become a new, empty store, and a
// command on a mistyped path would report success. Where a store sits one
// level down (examples/orders -dir ./data keeps it in ./data/idem), the
// error names it.
func checkStoreDir(dir string) error {
	if isStore(dir) {
		return nil
	}
	if info, err := os.Stat(dir); err != nil {
		return fmt.Errorf("idem: -dir %s: %w", dir, err)
	} else if !info.IsDir() {
		return fmt.Errorf("idem: -dir %s is not a directory", dir)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if sub := filepath.Join(dir, e.Name()); e.IsDir() && isStore(sub) {
			return fmt.Errorf("idem: %s is not an idem store, but %s is: use -dir %s", dir, sub, sub)
		}
	}
	return fmt.Errorf("idem: %s is not an idem store (it has no MANIFEST file)", dir)
}

// isStore reports whether dir holds a store: Badger's MANIFEST file.
func isStore(dir string) bool {
	info, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	return err == nil && info.Mode().IsRegular()
}

// local is a store opened in this process.
type local struct{ st *idem.Store }

func (l local) records(ctx context.Context, f idem.RecordFilter, fn func(idem.RecordInfo) error) error {
	return l.st.Records(ctx, f, fn)
}

func (l local) lookup(ctx context.Context, scope, tenant, key string) (idem.RecordInfo, error) {
	return l.st.Lookup(ctx, scope, tenant, key)
}

func (l local) stats(context.Context) (idem.Stats, error)    { return l.st.Stats(), nil }
func (l local) gc(ctx context.Context) (idem.GCStats, error) { return l.st.GC(ctx) }
func (l local) delete(ctx context.Context, scope, tenant, key string) error {
	return l.st.Delete(ctx, scope, tenant, key)
}
func (l local) close() error { return l.st.Close() }

// remote is a store behind idem.Store.AdminHandler.
type remote struct {
	base   string
	token  string // bearer token; empty: none
	client *http.Client
}

func (r *remote) do(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if method != http.MethodGet {
		req.Header.Set(adminapi.MutationHeader, adminapi.MutationValue)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.Header.Get(adminapi.ProtocolHeader) != adminapi.ProtocolVersion {
		resp.Body.Close()
		return nil, fmt.Errorf("idem: %s is not an idem admin endpoint (Store.AdminHandler): %s %s answered %s without the %s header",
			r.base, method, path, resp.Status, adminapi.ProtocolHeader)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
		err := fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, body.Error)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w (%v)", idem.ErrNotFound, err)
		}
		return nil, err
	}
	return resp, nil
}

func (r *remote) getJSON(ctx context.Context, method, path string, q url.Values, v any) error {
	resp, err := r.do(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (r *remote) records(ctx context.Context, f idem.RecordFilter, fn func(idem.RecordInfo) error) error {
	q := adminapi.Filter{
		Scope: f.Scope, Tenant: f.Tenant, State: string(f.State), Prefix: f.KeyPrefix,
		Expired: f.Expired, Values: f.Values, Limit: f.Limit,
	}.Query()
	resp, err := r.do(ctx, http.MethodGet, adminapi.PathRecords, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var info idem.RecordInfo
		if err := dec.Decode(&info); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading records: %w", err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
}

func keyQuery(scope, tenant, key string) url.Values {
	return adminapi.Key{Scope: scope, Tenant: tenant, Key: key}.Query()
}

func (r *remote) lookup(ctx context.Context, scope, tenant, key string) (idem.RecordInfo, error) {
	var info idem.RecordInfo
	err := r.getJSON(ctx, http.MethodGet, adminapi.PathRecord, keyQuery(scope, tenant, key), &info)
	return info, err
}

func (r *remote) stats(ctx context.Context) (idem.Stats, error) {
	var s idem.Stats
	err := r.getJSON(ctx, http.MethodGet, adminapi.PathStats, nil, &s)
	return s, err
}

func (r *remote) gc(ctx context.Context) (idem.GCStats, error) {
	var s idem.GCStats
	err := r.getJSON(ctx, http.MethodPost, adminapi.PathGC, nil, &s)
	return s, err
}

func (r *remote) delete(ctx context.Context, scope, tenant, key string) error {
	return r.getJSON(ctx, http.MethodPost, adminapi.PathDelete, keyQuery(scope, tenant, key), nil)
}

func (r *remote) close() error { return nil }
