package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type order struct {
	ID        string    `json:"id"`
	Item      string    `json:"item"`
	Qty       int       `json:"qty"`
	CreatedAt time.Time `json:"created_at"`
}

// storedOrder is an order as it is kept: with the hash of the request
// that created it, so that a retry can be told from another request.
type storedOrder struct {
	order
	Request string `json:"request"`
}

// errKeyReused answers a key whose order was made by another request.
var errKeyReused = errors.New("this idempotency key created an order for a different request")

// orderStore keeps each order in a file of its own,
// dir/USER/KEY/CREATED-ID.json, where USER and KEY are the caller and the
// idempotency key (hex, hashed): the orders one (user, key) made, oldest
// first. A file is written and synced under a temporary name, then linked
// to its final name, which fails if it exists: a crash leaves either the
// whole order or none of it.
type orderStore struct {
	dir string
	now func() time.Time
}

func openOrders(dir string, now func() time.Time) (*orderStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &orderStore{dir: dir, now: now}, nil
}

func (s *orderStore) userDir(user string) string {
	return filepath.Join(s.dir, hex.EncodeToString([]byte(user)))
}

func (s *orderStore) keyDir(user, key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.userDir(user), hex.EncodeToString(sum[:12]))
}

// requestHash identifies what an order request asks for.
func requestHash(item string, qty int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", qty, item))
	return hex.EncodeToString(sum[:])
}

// createOnce makes the order that item and qty ask for under (user, key),
// unless one was made within ttl, as the idempotency record lives: then
// that order is the answer if the same request made it (a retry after a
// crash between "order written" and "response recorded"), and
// errKeyReused if another one did. An older order is the key's past life:
// the key is new again.
func (s *orderStore) create(_ *http.Request, user, key, item string, qty int, ttl time.Duration) (order, error) {
	return s.createOnce(user, key, item, qty, ttl)
}

func (s *orderStore) createOnce(user, key, item string, qty int, ttl time.Duration) (order, error) {
	dir := s.keyDir(user, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return order{}, err
	}
	req := requestHash(item, qty)
	now := s.now().UTC()
	if last, ok, err := newest(dir); err != nil {
		return order{}, err
	} else if ok && now.Before(last.CreatedAt.Add(ttl)) {
		if last.Request != req {
			return order{}, errKeyReused
		}
		return last.order, nil
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", user, key, now.UnixNano()))
	o := storedOrder{order: order{ID: "ord_" + hex.EncodeToString(sum[:10]), Item: item, Qty: qty, CreatedAt: now}, Request: req}
	final := filepath.Join(dir, fmt.Sprintf("%020d-%s.json", now.UnixNano(), o.ID))
	if err := writeOnce(dir, final, o); err != nil {
		return order{}, err
	}
	return o.order, nil
}

// writeOnce writes o to final, atomically, unless final exists.
func writeOnce(dir, final string, o storedOrder) error {
	tmp, err := os.CreateTemp(dir, "tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := json.NewEncoder(tmp).Encode(o); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), final); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// newest returns the latest order in a key's directory.
func newest(dir string) (storedOrder, bool, error) {
	names, err := orderFiles(dir)
	if err != nil || len(names) == 0 {
		return storedOrder{}, false, err
	}
	o, err := readOrder(filepath.Join(dir, names[len(names)-1]))
	return o, err == nil, err
}

// orderFiles lists the order files of a key's directory, oldest first
// (their names start with the time they were made).
func orderFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, err
}

func readOrder(path string) (storedOrder, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return storedOrder{}, err
	}
	var o storedOrder
	return o, json.Unmarshal(b, &o)
}

// list returns user's orders, oldest first.
func (s *orderStore) list(user string) ([]order, error) {
	keys, err := os.ReadDir(s.userDir(user))
	if errors.Is(err, fs.ErrNotExist) {
		return []order{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []order{}
	for _, k := range keys {
		dir := filepath.Join(s.userDir(user), k.Name())
		names, err := orderFiles(dir)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			o, err := readOrder(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			out = append(out, o.order)
		}
	}
	slices.SortFunc(out, func(a, b order) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
