package idemgrpc_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/idemkit/idem/idemgrpc"
	"github.com/idemkit/idem/internal/retry/retrytest"
)

// lossyNetwork is a server interceptor outside idemgrpc that, after the
// call has been handled (and its answer stored), at random loses the
// answer (Unavailable, as a dropped connection looks) or holds it past
// the client's patience.
type lossyNetwork struct {
	mu         sync.Mutex
	rng        *rand.Rand
	lost, late atomic.Int32
	hold       time.Duration
}

func (l *lossyNetwork) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	l.mu.Lock()
	fate := l.rng.IntN(10)
	l.mu.Unlock()
	switch {
	case fate < 3:
		l.lost.Add(1)
		return nil, status.Error(codes.Unavailable, "connection lost")
	case fate < 5:
		l.late.Add(1)
		select {
		case <-time.After(l.hold):
		case <-ctx.Done():
		}
	}
	return resp, err
}

// TestClientOverALossyNetworkRunsEachCallOnce: with the client
// interceptor every logical call runs once on the server and ends with
// the first run's answer; retried without it (a new key per attempt, as
// a client that does not keep its key), calls run twice.
func TestClientOverALossyNetworkRunsEachCallOnce(t *testing.T) {
	const n, attemptTimeout = 60, 150 * time.Millisecond
	net := &lossyNetwork{rng: rand.New(rand.NewPCG(1, 1)), hold: 3 * attemptTimeout}
	var replays atomic.Int32
	f := newFixture(t, fixtureOpts{tcp: true, outer: []grpc.UnaryServerInterceptor{net.intercept},
		client: []grpc.DialOption{grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{
			AttemptTimeout: attemptTimeout, BaseDelay: 5 * time.Millisecond, MaxAttempts: 30}))}})
	answers := retrytest.SendAll(t, n, "order-", func(body string) (string, error) {
		var h metadata.MD
		resp, err := f.cli.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "user", "alice"), order(body), grpc.Header(&h))
		if idemgrpc.Replayed(h) {
			replays.Add(1)
		}
		return resp.GetUsername(), err
	})
	require.NotZero(t, net.lost.Load())
	require.NotZero(t, net.late.Load())
	f.svc.mu.Lock()
	for body, runs := range f.svc.byBody {
		assert.Equal(t, 1, runs, "%s ran once", body)
	}
	f.svc.mu.Unlock()
	assert.Len(t, answers, n)
	seen := map[string]bool{}
	for body, who := range answers {
		assert.NotEmpty(t, who, body)
		assert.False(t, seen[who], "%s: an answer of another call", body)
		seen[who] = true
	}
	assert.NotZero(t, replays.Load())
	t.Logf("with the interceptor: %d calls, %d answers lost, %d late, %d ended in a replay, %d runs",
		n, net.lost.Load(), net.late.Load(), replays.Load(), f.svc.runs.Load())

	net = &lossyNetwork{rng: rand.New(rand.NewPCG(1, 1)), hold: 3 * attemptTimeout}
	f = newFixture(t, fixtureOpts{tcp: true, outer: []grpc.UnaryServerInterceptor{net.intercept}})
	retrytest.SendAll(t, n, "order-", func(body string) (string, error) {
		for {
			ctx, cancel := context.WithTimeout(callCtx("alice", fmt.Sprint("naive-", rand.Int64())), attemptTimeout)
			resp, err := f.cli.UnaryCall(ctx, order(body))
			cancel()
			if err == nil {
				return resp.GetUsername(), nil
			}
		}
	})
	twice := 0
	f.svc.mu.Lock()
	for _, runs := range f.svc.byBody {
		if runs > 1 {
			twice++
		}
	}
	f.svc.mu.Unlock()
	assert.NotZero(t, twice, "without one key per logical call, retries run calls again")
	t.Logf("control, a new key per attempt: %d of %d calls ran more than once (%d runs)", twice, n, f.svc.runs.Load())
}

// scripted is a server interceptor that answers each attempt with the
// next of its errors (nil lets the call through), recording keys.
type scripted struct {
	mu       sync.Mutex
	errs     []error
	keys     []string
	deadline []time.Duration
}

func (s *scripted) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.keys = append(s.keys, md.Get(idemgrpc.MetadataKey)...)
	if d, ok := ctx.Deadline(); ok {
		s.deadline = append(s.deadline, time.Until(d))
	}
	var err error
	if len(s.errs) > 0 {
		err, s.errs = s.errs[0], s.errs[1:]
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func withRetryInfo(code codes.Code, reason string, delay time.Duration) error {
	st := status.New(code, "scripted")
	if reason != "" {
		st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: idemgrpc.ErrorDomain})
	}
	if delay > 0 {
		st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	}
	return st.Err()
}

func TestClientRetriesOnlyWhatARetryCanChange(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"Unavailable", status.Error(codes.Unavailable, "down"), true},
		{"ResourceExhausted", withRetryInfo(codes.ResourceExhausted, "", time.Millisecond), true},
		{"DeadlineExceeded", status.Error(codes.DeadlineExceeded, "slow"), true},
		{"Aborted in progress", withRetryInfo(codes.Aborted, "IN_PROGRESS", time.Millisecond), true},
		{"Aborted otherwise", status.Error(codes.Aborted, "conflict"), false},
		{"InvalidArgument", withRetryInfo(codes.InvalidArgument, "KEY_MISSING", 0), false},
		{"FailedPrecondition key reused", withRetryInfo(codes.FailedPrecondition, "KEY_REUSED", 0), false},
		{"FailedPrecondition outcome unknown", withRetryInfo(codes.FailedPrecondition, "OUTCOME_UNKNOWN", 0), false},
		{"NotFound", status.Error(codes.NotFound, "no"), false},
		{"Internal", status.Error(codes.Internal, "bug"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := &scripted{errs: []error{tc.err}}
			f := newFixture(t, fixtureOpts{outer: []grpc.UnaryServerInterceptor{script.intercept},
				client: []grpc.DialOption{grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{BaseDelay: time.Millisecond}))}})
			_, err := f.cli.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "user", "alice"), order("x"))
			if tc.retry {
				assert.NoError(t, err)
				require.Len(t, script.keys, 2)
				assert.Equal(t, script.keys[0], script.keys[1], "the same key on the retry")
				assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, script.keys[0])
			} else {
				assert.Equal(t, status.Code(tc.err), status.Code(err))
				assert.Len(t, script.keys, 1)
			}
		})
	}
}

func TestClientKeepsTheCallersKeyAndDeadline(t *testing.T) {
	script := &scripted{errs: []error{status.Error(codes.Unavailable, "down")}}
	f := newFixture(t, fixtureOpts{outer: []grpc.UnaryServerInterceptor{script.intercept},
		client: []grpc.DialOption{grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{
			BaseDelay: time.Millisecond, AttemptTimeout: 2 * time.Second}))}})
	ctx, cancel := context.WithTimeout(callCtx("alice", "mine-1"), 10*time.Second)
	defer cancel()
	_, err := f.cli.UnaryCall(ctx, order("x"))
	require.NoError(t, err)
	assert.Equal(t, []string{"mine-1", "mine-1"}, script.keys)
	require.Len(t, script.deadline, 2)
	for _, d := range script.deadline {
		assert.LessOrEqual(t, d, 2*time.Second, "each attempt carries its own deadline to the server")
		assert.Greater(t, d, time.Second)
	}
}

func TestClientStopsInTime(t *testing.T) {
	script := &scripted{errs: []error{
		status.Error(codes.Unavailable, "1"), status.Error(codes.Unavailable, "2"), status.Error(codes.Unavailable, "3"), status.Error(codes.Unavailable, "4"),
	}}
	var waits []time.Duration
	f := newFixture(t, fixtureOpts{outer: []grpc.UnaryServerInterceptor{script.intercept},
		client: []grpc.DialOption{grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{
			BaseDelay: time.Millisecond, MaxAttempts: 3, OnRetry: func(_ int, _ error, w time.Duration) { waits = append(waits, w) }}))}})
	_, err := f.cli.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "user", "alice"), order("x"))
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, "3", status.Convert(err).Message(), "the last of MaxAttempts answers")
	assert.Len(t, waits, 2)

	script = &scripted{errs: []error{withRetryInfo(codes.Unavailable, "", time.Minute)}}
	f = newFixture(t, fixtureOpts{outer: []grpc.UnaryServerInterceptor{script.intercept},
		client: []grpc.DialOption{grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{}))}})
	start := time.Now()
	_, err = f.cli.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "user", "alice"), order("x"))
	assert.Equal(t, codes.Unavailable, status.Code(err), "a RetryInfo beyond MaxDelay returns the answer")
	assert.Less(t, time.Since(start), time.Second)
}

// TestSlowHandlerRunsOnceWhileTheClientRetries: attempts that give up
// (AttemptTimeout) cancel the call on the server, but a claimed handler
// runs to its end all the same, so that its retries get its answer.
func TestSlowHandlerRunsOnceWhileTheClientRetries(t *testing.T) {
	f := newFixture(t, fixtureOpts{client: []grpc.DialOption{grpc.WithUnaryInterceptor(idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{
		AttemptTimeout: 100 * time.Millisecond, BaseDelay: 20 * time.Millisecond, MaxAttempts: 20}))}})
	f.svc.answer = func(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		select { // a handler that stops when its caller is gone
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return &testpb.SimpleResponse{Username: "the one run"}, nil
	}
	var h metadata.MD
	resp, err := f.cli.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "user", "alice"), order("x"), grpc.Header(&h))
	require.NoError(t, err)
	assert.Equal(t, "the one run", resp.GetUsername())
	assert.True(t, idemgrpc.Replayed(h))
	assert.EqualValues(t, 1, f.svc.runs.Load(), "the handler ran once")
}
