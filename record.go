package idem

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// recordState is the stage of a stored record.
type recordState uint8

const (
	// stateInProgress: a caller claimed the key and has not finished. A
	// persisted in-progress record that no live call owns is an orphan.
	stateInProgress recordState = 1
	// stateCompleted: the result is stored and replayed.
	stateCompleted recordState = 2
	// stateFailed: a permanent failure is stored and replayed.
	stateFailed recordState = 3
	// stateTooLarge: the result exceeded the scope's MaxValueSize; only its
	// size is stored, and replays return ErrValueTooLarge.
	stateTooLarge recordState = 4
)

// public returns the RecordState a record in this state shows (before
// the orphan check).
func (s recordState) public() RecordState {
	switch s {
	case stateInProgress:
		return StateInProgress
	case stateCompleted:
		return StateCompleted
	case stateFailed:
		return StateFailed
	case stateTooLarge:
		return StateTooLarge
	}
	return RecordState(fmt.Sprintf("state(%d)", uint8(s)))
}

// record is one key's stored state. Times are Unix nanoseconds of the
// store's clock; expires is the exact deadline that every read checks.
type record struct {
	state       recordState
	epoch       uint64 // the Open that wrote it
	created     int64
	expires     int64
	size        uint64 // length of the result, also for stateTooLarge
	fingerprint []byte
	value       []byte // the result, or the failure message for stateFailed
}

func (r *record) expired(now time.Time) bool { return now.UnixNano() >= r.expires }

// The encoding, version 1:
//
//	version u8 | state u8 | epoch uvarint | created i64 | expires i64 |
//	size uvarint | len(fingerprint) uvarint | fingerprint | len(value) uvarint |
//	value | crc32c of everything before it, u32
//
// Fixed-width integers are little endian. The trailing checksum turns a
// damaged record into ErrCorrupt instead of a wrong replay.
const codecVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxRecordOverhead is the most a record's encoding adds to its value.
var maxRecordOverhead = (&record{fingerprint: make([]byte, MaxFingerprintLen)}).encodedLen()

// encodedLen is an upper bound of the encoding's length.
func (r *record) encodedLen() int {
	return 2 + 3*binary.MaxVarintLen64 + 16 + len(r.fingerprint) + binary.MaxVarintLen64 + len(r.value) + 4
}

// appendRecord appends the encoding of r to dst.
func appendRecord(dst []byte, r *record) []byte {
	start := len(dst)
	dst = append(dst, codecVersion, byte(r.state))
	dst = binary.AppendUvarint(dst, r.epoch)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.created))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.expires))
	dst = binary.AppendUvarint(dst, r.size)
	dst = binary.AppendUvarint(dst, uint64(len(r.fingerprint)))
	dst = append(dst, r.fingerprint...)
	dst = binary.AppendUvarint(dst, uint64(len(r.value)))
	dst = append(dst, r.value...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// storedRecord returns r as buf, its encoding by appendRecord, holds it:
// what decodeRecord(buf) would return, without parsing buf again. Its
// value aliases buf, which ends with the value and the checksum, never the
// slice r was given, and ends where the value does (an append cannot
// reach the checksum); its fingerprint is r's own, which the caller must
// not change.
func storedRecord(r *record, buf []byte) record {
	s := *r
	end := len(buf) - 4
	s.value = buf[end-len(r.value) : end : end]
	if len(s.fingerprint) == 0 {
		s.fingerprint = nil
	}
	return s
}

// decodeRecord parses b into r. The fingerprint and value alias b. Any
// malformed input returns an error wrapping ErrCorrupt; it never panics.
func decodeRecord(b []byte, r *record) error {
	if len(b) < 4 {
		return corrupt("%d bytes", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return corrupt("checksum mismatch")
	}
	d := decoder{b: body}
	if v := d.byte(); v != codecVersion {
		return corrupt("unknown version %d", v)
	}
	r.state = recordState(d.byte())
	r.epoch = d.uvarint()
	r.created = int64(d.uint64())
	r.expires = int64(d.uint64())
	r.size = d.uvarint()
	r.fingerprint = d.bytes()
	r.value = d.bytes()
	if d.bad {
		return corrupt("truncated")
	}
	if len(d.b) != 0 {
		return corrupt("%d trailing bytes", len(d.b))
	}
	if r.state < stateInProgress || r.state > stateTooLarge {
		return corrupt("unknown state %d", r.state)
	}
	if len(r.fingerprint) == 0 {
		r.fingerprint = nil
	}
	return nil
}

func corrupt(format string, args ...any) error { return invalid(ErrCorrupt, format, args...) }

// decoder reads fields from b; a short read sets bad and yields zeros.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
