package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
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

// orderStore keeps each order in a file of its own, dir/USER/ID.json,
// created at most once: the file is written and synced under a temporary
// name, then linked to its final name, which fails if it exists. A crash
// leaves either the whole order or none of it.
type orderStore struct{ dir string }

func openOrders(dir string) (*orderStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &orderStore{dir: dir}, nil
}

func (s *orderStore) userDir(user string) string {
	return filepath.Join(s.dir, hex.EncodeToString([]byte(user)))
}

// createOnce stores o for user unless an order with its id exists, and
// returns the stored order either way.
func (s *orderStore) createOnce(user string, o order) (order, error) {
	dir := s.userDir(user)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return order{}, err
	}
	final := filepath.Join(dir, o.ID+".json")
	if existing, err := readOrder(final); err == nil {
		return existing, nil
	}
	tmp, err := os.CreateTemp(dir, "tmp-*")
	if err != nil {
		return order{}, err
	}
	defer os.Remove(tmp.Name())
	if err := json.NewEncoder(tmp).Encode(o); err != nil {
		_ = tmp.Close()
		return order{}, err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return order{}, err
	}
	if err := tmp.Close(); err != nil {
		return order{}, err
	}
	if err := os.Link(tmp.Name(), final); errors.Is(err, fs.ErrExist) {
		return readOrder(final)
	} else if err != nil {
		return order{}, err
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		_ = d.Sync()
		_ = d.Close()
	}
	return o, nil
}

func readOrder(path string) (order, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return order{}, err
	}
	var o order
	return o, json.Unmarshal(b, &o)
}

// list returns user's orders, oldest first.
func (s *orderStore) list(user string) ([]order, error) {
	entries, err := os.ReadDir(s.userDir(user))
	if errors.Is(err, fs.ErrNotExist) {
		return []order{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []order{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		o, err := readOrder(filepath.Join(s.userDir(user), e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b order) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
