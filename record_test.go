package idem

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleRecords() []record {
	return []record{
		{state: stateInProgress, epoch: 1, created: 10, expires: 20, fingerprint: []byte("fp")},
		{state: stateCompleted, epoch: 7, created: -5, expires: 1 << 62, size: 5, value: []byte("hello")},
		{state: stateFailed, epoch: 1 << 40, size: 8, value: []byte("declined"), fingerprint: make([]byte, MaxFingerprintLen)},
		{state: stateTooLarge, epoch: 2, size: 1 << 30},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, want := range sampleRecords() {
		t.Run(string(want.state.public()), func(t *testing.T) {
			var got record
			require.NoError(t, decodeRecord(appendRecord(nil, &want), &got))
			if len(want.value) == 0 {
				want.value = []byte{}
			}
			assert.Equal(t, want, got)
			assert.LessOrEqual(t, len(appendRecord(nil, &want)), want.encodedLen())
		})
	}
}

// TestStoredRecordIsTheDecodedOne: the record a completion hands to its
// waiters without parsing its encoding is the one decoding gives, and
// shares nothing with the value it was given.
func TestStoredRecordIsTheDecodedOne(t *testing.T) {
	for _, want := range append(sampleRecords(), record{state: stateCompleted, value: []byte{}, fingerprint: []byte{}}) {
		t.Run(string(want.state.public()), func(t *testing.T) {
			given := want
			given.value = bytes.Clone(want.value)
			buf := appendRecord(nil, &given)
			var decoded record
			require.NoError(t, decodeRecord(buf, &decoded))
			stored := storedRecord(&given, buf)
			assert.Equal(t, decoded, stored)
			assert.Equal(t, len(stored.value), cap(stored.value), "an append to the value cannot overwrite the checksum")
			if len(given.value) > 0 {
				given.value[0]++
				assert.Equal(t, want.value, stored.value, "the value is the encoding's, not the given slice")
			}
		})
	}
}

func TestRecordCorruptionIsDetected(t *testing.T) {
	for _, r := range sampleRecords() {
		enc := appendRecord(nil, &r)
		for i := range enc {
			for bit := range 8 {
				b := append([]byte(nil), enc...)
				b[i] ^= 1 << bit
				assert.ErrorIs(t, decodeRecord(b, new(record)), ErrCorrupt, "bit %d of byte %d", bit, i)
			}
		}
		for n := range len(enc) {
			assert.ErrorIs(t, decodeRecord(enc[:n], new(record)), ErrCorrupt, "truncated to %d", n)
		}
	}
}

func TestStateString(t *testing.T) {
	assert.Equal(t, StateInProgress, stateInProgress.public())
	assert.Equal(t, StateTooLarge, stateTooLarge.public())
	assert.Equal(t, RecordState("state(9)"), recordState(9).public())
}

// TestRecordStatesParse checks that every state a record can show reads
// back by name, and that an unknown name lists them.
func TestRecordStatesParse(t *testing.T) {
	for _, s := range RecordStates() {
		got, err := ParseRecordState(string(s))
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	for s := stateInProgress; s <= stateTooLarge; s++ {
		assert.Contains(t, RecordStates(), s.public(), "a stored state is listed")
	}
	assert.Contains(t, RecordStates(), StateCorrupt)
	_, err := ParseRecordState("weird")
	assert.ErrorContains(t, err, "corrupt")
}

// FuzzDecodeRecord checks that no input makes the decoder panic, and that
// whatever it accepts survives an encode and decode unchanged. Each input is tried
// as it is and with a valid checksum appended, so that the fuzzer reaches
// the field parser behind the checksum.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		enc := appendRecord(nil, &r)
		f.Add(enc)
		f.Add(enc[:len(enc)-4])
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		sealed := binary.LittleEndian.AppendUint32(bytes.Clone(b), crc32.Checksum(b, castagnoli))
		for _, in := range [][]byte{b, sealed} {
			var r record
			if err := decodeRecord(in, &r); err != nil {
				assert.ErrorIs(t, err, ErrCorrupt)
				continue
			}
			var again record
			require.NoError(t, decodeRecord(appendRecord(nil, &r), &again))
			assert.Equal(t, r, again)
		}
	})
}
