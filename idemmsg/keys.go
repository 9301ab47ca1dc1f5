package idemmsg

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
)

// KeyFunc derives a delivery's idempotency key: deliveries with the same
// key run their effect once while the key's record lives.
type KeyFunc func(Delivery) (string, error)

// errNoID is ByID's error for a message without an ID.
var errNoID = errors.New("idemmsg: the message has no ID to key it by")

// ByID keys a delivery by its message ID: redeliveries of one message, and
// publishes that the publisher gave one ID, run once.
func ByID(d Delivery) (string, error) {
	if d.ID == "" {
		return "", errNoID
	}
	return d.ID, nil
}

// ByContent keys a delivery by a SHA-256 of its body and of the named
// headers' values, in the order given: two messages with the same content
// run once, whatever their IDs — durable content-based deduplication, for
// as long as the scope keeps its records. Use it for publishers that send
// no ID of their own, and whose messages are never the same twice on
// purpose.
func ByContent(headers ...string) KeyFunc {
	return func(d Delivery) (string, error) {
		h := sha256.New()
		writeField(h, d.Body)
		for _, name := range headers {
			values := d.Header[name]
			_, _ = h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(values))))
			for _, v := range values {
				writeField(h, []byte(v))
			}
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
}

// writeField writes b after its length, so that no two sequences of
// fields hash alike.
func writeField(h hash.Hash, b []byte) {
	_, _ = h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
	_, _ = h.Write(b)
}
