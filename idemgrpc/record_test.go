package idemgrpc

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/idemkit/idem"
)

func TestRecordsRoundTrip(t *testing.T) {
	b, err := encodeResponse(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING})
	require.NoError(t, err)
	rec, err := decodeRecord(b)
	require.NoError(t, err)
	assert.True(t, proto.Equal(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, rec.response))

	rec, err = decodeRecord(encodeStatus(status.New(codes.NotFound, "gone")))
	require.NoError(t, err)
	assert.Equal(t, codes.NotFound, rec.status.Code())
	assert.Equal(t, "gone", rec.status.Message())

	rec, err = decodeRecord(encodeUnavailable(codes.OK))
	require.NoError(t, err)
	assert.True(t, rec.unavailable)

	for _, bad := range [][]byte{nil, {9}, {kindResponse, 0xff}, {kindStatus}} {
		_, err := decodeRecord(bad)
		assert.ErrorIs(t, err, errBadRecord, "%x", bad)
	}
}

// FuzzDecodeRecord: no stored bytes make decodeRecord panic, and what it
// accepts is one of the three kinds.
func FuzzDecodeRecord(f *testing.F) {
	ok, _ := encodeResponse(&grpc_health_v1.HealthCheckResponse{Status: 1})
	f.Add(ok)
	f.Add(encodeStatus(status.New(codes.NotFound, "gone")))
	f.Add(encodeUnavailable(codes.Internal))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		kinds := 0
		if rec.response != nil {
			kinds++
		}
		if rec.status != nil {
			kinds++
		}
		if kinds != 1 {
			t.Fatalf("decoded %x into %+v", b, rec)
		}
		if rec.status != nil && !rec.unavailable && rec.status.Code() == codes.OK {
			t.Fatalf("a stored error with code OK from %x", b)
		}
	})
}

// TestEveryStoreErrorHasItsStatus covers the outcomes a test server
// cannot easily reach (an orphan under OrphanReport, an answer too large).
func TestEveryStoreErrorHasItsStatus(t *testing.T) {
	s := &server{opts: Options{RetryAfter: 1}}
	for _, tc := range []struct {
		err    error
		code   codes.Code
		reason string
	}{
		{idem.ErrFingerprintMismatch, codes.FailedPrecondition, "KEY_REUSED"},
		{idem.ErrInProgress, codes.Aborted, "IN_PROGRESS"},
		{idem.ErrValueTooLarge, codes.FailedPrecondition, "RESPONSE_UNAVAILABLE"},
		{idem.ErrOutcomeUnknown, codes.FailedPrecondition, "OUTCOME_UNKNOWN"},
		{idem.ErrInvalidKey, codes.InvalidArgument, "KEY_INVALID"},
		{idem.ErrInvalidScope, codes.Unauthenticated, "TENANT_UNKNOWN"},
	} {
		err := s.refuse(context.Background(), "/m", "k", tc.err)
		assert.Equal(t, tc.code, status.Code(err), "%v", tc.err)
		assert.Equal(t, tc.reason, Reason(err), "%v", tc.err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.Equal(t, codes.Canceled, status.Code(s.refuse(ctx, "/m", "k", errors.New("store gone"))))
}
