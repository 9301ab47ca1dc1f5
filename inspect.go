package idem

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// RecordInfo describes one stored record, for operators ([Store.Records],
// [Store.Lookup], the admin handler and the idem CLI).
//
// In JSON (MarshalJSON), a tenant or key that is not valid UTF-8 is sent
// as tenant_base64 or key_base64, with its exact bytes.
type RecordInfo struct {
	Scope, Tenant, Key string
	// State is where the record stands (see RecordState).
	State       RecordState
	Epoch       uint64 // the Open that wrote it
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Expired     bool   // the deadline has passed; the collector will delete it
	ValueBytes  int64  // size of the result (or the failure message)
	Fingerprint []byte // nil when none was given
	Value       []byte // the result or failure message, when asked for
}

// recordJSON is the wire form of RecordInfo: RFC 3339 times, the
// fingerprint in hex and the value in base64. A tenant or key that is not
// valid UTF-8 (which JSON strings cannot carry) is sent in base64 instead,
// in tenant_base64 or key_base64, and its text field is left empty.
type recordJSON struct {
	Scope        string      `json:"scope"`
	Tenant       string      `json:"tenant"`
	TenantBase64 []byte      `json:"tenant_base64,omitempty"`
	Key          string      `json:"key,omitempty"`
	KeyBase64    []byte      `json:"key_base64,omitempty"`
	State        RecordState `json:"state"`
	Epoch        uint64      `json:"epoch"`
	CreatedAt    time.Time   `json:"created_at"`
	ExpiresAt    time.Time   `json:"expires_at"`
	Expired      bool        `json:"expired"`
	ValueBytes   int64       `json:"value_bytes"`
	Fingerprint  string      `json:"fingerprint"`
	Value        []byte      `json:"value,omitempty"`
}

// MarshalJSON encodes r in its wire form.
func (r RecordInfo) MarshalJSON() ([]byte, error) {
	w := recordJSON{
		Scope: r.Scope, State: r.State, Epoch: r.Epoch,
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), Expired: r.Expired,
		ValueBytes: r.ValueBytes, Fingerprint: hex.EncodeToString(r.Fingerprint), Value: r.Value,
	}
	w.Tenant, w.TenantBase64 = textOrBytes(r.Tenant)
	w.Key, w.KeyBase64 = textOrBytes(r.Key)
	return json.Marshal(w)
}

// textOrBytes returns s as JSON text if it is valid UTF-8, else as bytes
// (which encoding/json writes in base64).
func textOrBytes(s string) (string, []byte) {
	if utf8.ValidString(s) {
		return s, nil
	}
	return "", []byte(s)
}

// UnmarshalJSON decodes r from its wire form.
func (r *RecordInfo) UnmarshalJSON(b []byte) error {
	var w recordJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	fp, err := hex.DecodeString(w.Fingerprint)
	if err != nil {
		return fmt.Errorf("idem: record fingerprint: %w", err)
	}
	if len(fp) == 0 {
		fp = nil
	}
	if w.TenantBase64 != nil {
		w.Tenant = string(w.TenantBase64)
	}
	if w.KeyBase64 != nil {
		w.Key = string(w.KeyBase64)
	}
	*r = RecordInfo{
		Scope: w.Scope, Tenant: w.Tenant, Key: w.Key, State: w.State, Epoch: w.Epoch,
		CreatedAt: w.CreatedAt, ExpiresAt: w.ExpiresAt, Expired: w.Expired,
		ValueBytes: w.ValueBytes, Fingerprint: fp, Value: w.Value,
	}
	return nil
}

// RecordFilter selects records for [Store.Records]. Zero fields select
// everything (but expired records, see Expired).
type RecordFilter struct {
	Scope     string      // only this scope
	Tenant    string      // only this tenant (with Scope)
	State     RecordState // only records in this state
	KeyPrefix string      // only keys starting with it
	Expired   bool        // include records whose deadline has passed
	Limit     int         // stop after this many (0: no limit)
	Values    bool        // fill RecordInfo.Value
}

// Records calls fn for each record that matches f, streaming (in (scope,
// tenant, key) order with the default backend): memory use does not grow
// with the number of records. It stops at fn's first error and returns
// it. Damaged records are reported with State StateCorrupt. A fn that blocks
// (writing to a client that stopped reading, say) holds up neither the
// store's other calls nor Close: Close ends the listing, with ErrClosed.
func (s *Store) Records(ctx context.Context, f RecordFilter, fn func(RecordInfo) error) error {
	if ctx == nil {
		return errNilContext
	}
	if f.Tenant != "" && f.Scope == "" {
		return invalid(ErrInvalidScope, "a tenant filter needs a scope")
	}
	prefix := []byte{recordPrefix}
	if f.Scope != "" {
		prefix = keyPrefix(f.Scope, f.Tenant)
		if f.Tenant == "" {
			prefix = prefix[:len(prefix)-1] // every tenant of the scope
		}
	}
	now, err := s.time(ctx)
	if err != nil {
		return err
	}
	// The backend is scanned on a goroutine of its own, under the store's
	// close lock, and fn is called here, outside it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan RecordInfo, 64)
	scanned := make(chan error, 1)
	go func() {
		err := s.io(func(be Backend) error {
			return be.Scan(ctx, prefix, func(k []byte, e Entry) error {
				info, ok := s.describe(k, e, now, f.Values)
				if !ok || !f.match(info) {
					return ctx.Err()
				}
				select {
				case found <- info:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				case <-s.quit:
					return ErrClosed
				}
			})
		})
		close(found)
		scanned <- err
	}()
	stop := func(err error) error {
		cancel()
		for range found { // let the scan end
		}
		<-scanned
		return err
	}
	n := 0
	for info := range found {
		if err := fn(info); err != nil {
			return stop(err)
		}
		if n++; f.Limit > 0 && n >= f.Limit {
			return stop(nil)
		}
	}
	return <-scanned
}

func (f RecordFilter) match(r RecordInfo) bool {
	return (f.Tenant == "" || r.Tenant == f.Tenant) &&
		(f.State == "" || r.State == f.State) &&
		strings.HasPrefix(r.Key, f.KeyPrefix) &&
		(f.Expired || !r.Expired)
}

// ErrNotFound is returned by [Store.Lookup] and [Store.Delete] for a key
// that has no record.
var ErrNotFound = errors.New("idem: no record")

// Lookup returns the record of key in scope (and tenant, if not empty),
// expired or not, with its value.
func (s *Store) Lookup(ctx context.Context, scope, tenant, key string) (RecordInfo, error) {
	if ctx == nil {
		return RecordInfo{}, errNilContext
	}
	k, err := persistedKey(scope, tenant, key)
	if err != nil {
		return RecordInfo{}, err
	}
	var (
		e     Entry
		found bool
	)
	err = s.io(func(be Backend) (err error) {
		e, found, err = be.Get(ctx, k)
		return err
	})
	if err != nil {
		return RecordInfo{}, err
	}
	if !found {
		return RecordInfo{}, ErrNotFound
	}
	now, err := s.time(ctx)
	if err != nil {
		return RecordInfo{}, err
	}
	info, _ := s.describe(k, e, now, true)
	return info, nil
}

// Delete removes the record of key in scope (and tenant, if not empty), as
// if it had expired: the next call for the key runs again. It waits
// neither for nor with a call in progress: a key owned by a running call
// returns ErrInProgress, here or, with a shared backend, in another process.
func (s *Store) Delete(ctx context.Context, scope, tenant, key string) error {
	if ctx == nil {
		return errNilContext
	}
	k, err := persistedKey(scope, tenant, key)
	if err != nil {
		return err
	}
	if s.readOnly {
		return ErrReadOnly
	}
	sh, h := s.shards.of(k)
	c := sh.own(k, h)
	if c == nil {
		return ErrInProgress
	}
	defer sh.finish(k, c, nil, 0, false)
	var (
		found bool
		size  int64
	)
	err = s.io(func(be Backend) error {
		e, ok, err := be.Get(ctx, k)
		if err != nil || !ok {
			return err
		}
		if e.Owner != 0 && !e.Lapsed {
			return ErrInProgress
		}
		found, size = true, recordSize(k, len(e.Value))
		return be.Delete(ctx, k)
	})
	if err != nil {
		return err
	}
	if !found {
		return ErrNotFound
	}
	scopeName, _, _, _ := splitKey(k)
	s.usage.of(scopeName).left(size)
	return nil
}

// persistedKey validates and encodes a (scope, tenant, key) triple.
func persistedKey(scope, tenant, key string) ([]byte, error) {
	if !validScopeName(scope) {
		return nil, invalid(ErrInvalidScope, "name %q", scope)
	}
	if len(tenant) > MaxTenantLen {
		return nil, invalid(ErrInvalidScope, "tenant id is %d bytes, at most %d", len(tenant), MaxTenantLen)
	}
	if err := checkKey(key, nil); err != nil {
		return nil, err
	}
	return appendKey(nil, keyPrefix(scope, tenant), key), nil
}

// describe turns a stored record into a RecordInfo. ok is false for a key
// that is not a record key.
func (s *Store) describe(k []byte, e Entry, now time.Time, withValue bool) (RecordInfo, bool) {
	scope, tenant, key, ok := splitKey(k)
	if !ok {
		return RecordInfo{}, false
	}
	info := RecordInfo{Scope: scope, Tenant: tenant, Key: key}
	var rec record
	if err := decodeRecord(e.Value, &rec); err != nil {
		info.State = StateCorrupt
		return info, true
	}
	info.State = rec.state.public()
	if rec.state == stateInProgress && e.Lapsed && !s.live(k) {
		info.State = StateOrphaned
	}
	info.Epoch = rec.epoch
	info.CreatedAt, info.ExpiresAt = timeOf(rec.created), timeOf(rec.expires)
	info.Expired = rec.expired(now)
	info.ValueBytes = int64(rec.size)
	info.Fingerprint = bytesClone(rec.fingerprint)
	if withValue {
		info.Value = bytesClone(rec.value)
	}
	return info, true
}

// live reports whether a call of this process owns the persisted key k.
func (s *Store) live(k []byte) bool {
	sh, _ := s.shards.of(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.calls[string(k)] != nil
}

func bytesClone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
