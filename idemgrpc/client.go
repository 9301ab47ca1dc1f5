package idemgrpc

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/idemkit/idem/internal/retry"
)

// ClientOptions configures [UnaryClientInterceptor]. The zero value is
// ready to use.
type ClientOptions struct {
	// Methods are the full method names given a key and retried; other
	// calls pass through untouched, once. Nil means every unary method.
	Methods []string
	// NewKey makes a call's key when its outgoing metadata has none. Nil
	// means a random UUID (version 4, from crypto/rand).
	NewKey func() string

	// MaxAttempts bounds the attempts of one call, the first included.
	// Zero means 5; 1 means no retries.
	MaxAttempts int
	// AttemptTimeout bounds each attempt: a slower one is given up (as
	// DeadlineExceeded) and retried. Zero means no bound but the call's
	// context.
	AttemptTimeout time.Duration
	// BaseDelay is the longest wait before the first retry; it doubles
	// with each retry. Zero means 100 ms.
	BaseDelay time.Duration
	// MaxDelay caps the wait before a retry, a RetryInfo delay included:
	// an answer that asks for a longer wait is returned instead. Zero
	// means 10 s.
	MaxDelay time.Duration

	// OnRetry, if set, is told of each retry before its wait: the attempt
	// that failed (1 for the first), its error, and the wait.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// UnaryClientInterceptor is the client half: it gives each call of its
// Methods one idempotency key (in the idempotency-key metadata, unless the
// call's outgoing metadata has one) and retries the call with that same
// key, so that a call whose answer was lost runs once on the server.
//
// A call is retried, up to MaxAttempts attempts and never past its
// context, after Unavailable, ResourceExhausted, DeadlineExceeded (an
// attempt that AttemptTimeout ended, or the server's; never once the
// call's own deadline has passed), and
// Aborted with reason IN_PROGRESS (the first attempt still runs on the
// server), after the answer's RetryInfo delay when it gives one. Every
// other answer is returned: InvalidArgument, FailedPrecondition (a key
// reused, an outcome unknown), an application's error. Between attempts
// it waits a random time up to BaseDelay doubled per retry, at most
// MaxDelay. Ask for the header (grpc.Header) to see whether the answer
// was replayed ([Replayed]).
func UnaryClientInterceptor(opts ClientOptions) grpc.UnaryClientInterceptor {
	newKey := opts.NewKey
	if newKey == nil {
		newKey = retry.UUIDv4
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		if opts.Methods != nil && !slices.Contains(opts.Methods, method) {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(MetadataKey)) == 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, MetadataKey, newKey())
		}
		maxAttempts := retry.Or(opts.MaxAttempts, 5)
		maxDelay := retry.Or(opts.MaxDelay, 10*time.Second)
		for attempt := 1; ; attempt++ {
			err := invokeOnce(ctx, opts.AttemptTimeout, method, req, reply, cc, invoker, callOpts)
			again, delay := retryableStatus(ctx, err)
			if !again || attempt == maxAttempts || ctx.Err() != nil {
				return err
			}
			wait, ok := retry.Wait(ctx, attempt, retry.Or(opts.BaseDelay, 100*time.Millisecond), maxDelay, delay)
			if !ok {
				return err // no time to wait: the caller gets this answer
			}
			if opts.OnRetry != nil {
				opts.OnRetry(attempt, err, wait)
			}
			if err := retry.Sleep(ctx, wait); err != nil {
				return status.FromContextError(err).Err()
			}
		}
	}
}

var errAttemptTimeout = errors.New("idemgrpc: no answer within AttemptTimeout")

// invokeOnce makes one attempt, bounded by AttemptTimeout.
func invokeOnce(ctx context.Context, timeout time.Duration, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts []grpc.CallOption) error {
	if timeout <= 0 {
		return invoker(ctx, method, req, reply, cc, callOpts...)
	}
	attemptCtx, cancel := context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
	defer cancel()
	err := invoker(attemptCtx, method, req, reply, cc, callOpts...)
	if err != nil && ctx.Err() == nil && context.Cause(attemptCtx) == errAttemptTimeout {
		return status.Errorf(codes.DeadlineExceeded, "%v (%v)", errAttemptTimeout, timeout)
	}
	return err
}

// retryableStatus says whether a call's error is worth a retry with the
// same key, and how long its answer asks to wait.
func retryableStatus(ctx context.Context, err error) (bool, time.Duration) {
	if err == nil || ctx.Err() != nil {
		return false, 0
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
	case codes.Aborted:
		if Reason(err) != reasonInProgress {
			return false, 0
		}
	default:
		return false, 0
	}
	return true, retryDelay(st)
}

// Replayed reports whether the header metadata of an answer marks it as
// a replay of an earlier call's answer.
func Replayed(header metadata.MD) bool {
	v := header.Get(ReplayedHeader)
	return len(v) == 1 && v[0] == "true"
}
