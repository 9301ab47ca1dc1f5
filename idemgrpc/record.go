package idemgrpc

import (
	"errors"
	"fmt"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// A stored answer is a kind byte and a protocol buffer: the response as
// an Any (its type name, so that a replay builds the right message
// without the handler), or the status of a stored error, or the status
// code of an answer too large to keep.
const (
	kindResponse    = 1
	kindStatus      = 2
	kindUnavailable = 3
)

// record is a decoded stored answer.
type record struct {
	response    proto.Message  // for an OK answer
	status      *status.Status // for an error, or the code of an unavailable answer
	unavailable bool
}

func encodeResponse(msg proto.Message) ([]byte, error) {
	a, err := anypb.New(msg)
	if err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	return append([]byte{kindResponse}, b...), err
}

func encodeStatus(st *status.Status) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(st.Proto())
	return append([]byte{kindStatus}, b...)
}

func encodeUnavailable(code codes.Code) []byte {
	b, _ := proto.Marshal(&spb.Status{Code: int32(code)})
	return append([]byte{kindUnavailable}, b...)
}

var errBadRecord = errors.New("idemgrpc: not a stored answer")

func decodeRecord(b []byte) (record, error) {
	if len(b) == 0 {
		return record{}, errBadRecord
	}
	switch b[0] {
	case kindResponse:
		var a anypb.Any
		if err := proto.Unmarshal(b[1:], &a); err != nil {
			return record{}, fmt.Errorf("%w: %w", errBadRecord, err)
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			return record{}, fmt.Errorf("%w: %w", errBadRecord, err)
		}
		return record{response: msg}, nil
	case kindStatus, kindUnavailable:
		var p spb.Status
		if err := proto.Unmarshal(b[1:], &p); err != nil {
			return record{}, fmt.Errorf("%w: %w", errBadRecord, err)
		}
		if p.Code == int32(codes.OK) && b[0] == kindStatus {
			return record{}, fmt.Errorf("%w: a stored error with code OK", errBadRecord)
		}
		return record{status: status.FromProto(&p), unavailable: b[0] == kindUnavailable}, nil
	}
	return record{}, fmt.Errorf("%w: kind %d", errBadRecord, b[0])
}
