package idemgrpc

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every refusal.
const ErrorDomain = "idem.idemkit.github.io"

// The google.rpc.ErrorInfo reasons of the refusals.
const (
	reasonKeyMissing          = "KEY_MISSING"
	reasonKeyInvalid          = "KEY_INVALID"
	reasonKeyReused           = "KEY_REUSED"
	reasonInProgress          = "IN_PROGRESS"
	reasonResponseUnavailable = "RESPONSE_UNAVAILABLE"
	reasonOutcomeUnknown      = "OUTCOME_UNKNOWN"
	reasonTenantUnknown       = "TENANT_UNKNOWN"
	reasonStoreUnavailable    = "STORE_UNAVAILABLE"
)

// refusal is the status of a refused call: its code, an ErrorInfo with
// the reason, and a RetryInfo when retryAfter is positive.
func refusal(code codes.Code, reason, msg string, retryAfter time.Duration) error {
	if msg == "" {
		msg = "idempotency: " + reason
	} else {
		msg = "idempotency: " + msg
	}
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
	if err != nil {
		return status.Error(code, msg)
	}
	if retryAfter > 0 {
		if with, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
			st = with
		}
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason of an idemgrpc refusal (such as
// "IN_PROGRESS" or "KEY_REUSED"), or "" for any other error.
func Reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain {
			return info.Reason
		}
	}
	return ""
}

// retryDelay is the RetryInfo delay of a status, or 0.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.RetryDelay != nil {
			return info.RetryDelay.AsDuration()
		}
	}
	return 0
}
