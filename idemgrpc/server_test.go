package idemgrpc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemgrpc"
)

const unaryCall = "/grpc.testing.TestService/UnaryCall"

// service answers UnaryCall with the number of its runs, or with what
// answer returns; its runs are counted by payload.
type service struct {
	testpb.UnimplementedTestServiceServer
	runs   atomic.Int32
	mu     sync.Mutex
	byBody map[string]int
	answer func(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error)
}

func (s *service) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := s.runs.Add(1)
	s.mu.Lock()
	s.byBody[string(req.GetPayload().GetBody())]++
	s.mu.Unlock()
	if s.answer != nil {
		return s.answer(ctx, req)
	}
	return &testpb.SimpleResponse{Username: fmt.Sprint("run-", n), Payload: req.GetPayload()}, nil
}

// callerTenant is the Tenant: the call's "user" metadata.
func callerTenant(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if u := md.Get("user"); len(u) == 1 {
		return u[0], nil
	}
	return "", errors.New("no user")
}

// recoverer turns a handler's panic into Internal, as a server's recovery
// interceptor does; idemgrpc sits inside it.
func recoverer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = status.Errorf(codes.Internal, "panic: %v", p)
		}
	}()
	return handler(ctx, req)
}

type fixture struct {
	st  *idem.Store
	svc *service
	cli testpb.TestServiceClient
}

type fixtureOpts struct {
	server idemgrpc.Options
	outer  []grpc.UnaryServerInterceptor // before idemgrpc
	client []grpc.DialOption
	tcp    bool // a real loopback listener instead of bufconn
	bare   bool // no idemgrpc at all
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sc, err := st.Scope("rpc", idem.ScopeOptions{})
	require.NoError(t, err)
	if o.server.Tenant == nil && !o.server.Global {
		o.server.Tenant = callerTenant
	}
	if o.server.Methods == nil {
		o.server.Methods = []string{unaryCall}
	}
	interceptor, err := idemgrpc.New(sc, o.server)
	require.NoError(t, err)
	chain := append(append(o.outer, recoverer), interceptor)
	if o.bare {
		chain = o.outer
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(chain...),
		grpc.ChainStreamInterceptor(idemgrpc.StreamServerInterceptor(o.server)),
	)
	svc := &service{byBody: map[string]int{}}
	testpb.RegisterTestServiceServer(srv, svc)
	var lis net.Listener
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	target := "passthrough:///bufnet"
	if o.tcp {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		target = lis.Addr().String()
	} else {
		buf := bufconn.Listen(1 << 20)
		lis = buf
		dial = append(dial, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return buf.DialContext(ctx) }))
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(target, append(dial, o.client...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &fixture{st: st, svc: svc, cli: testpb.NewTestServiceClient(conn)}
}

// callCtx is a context whose call carries user and, if not empty, key.
func callCtx(user, key string) context.Context {
	md := metadata.Pairs("user", user)
	if key != "" {
		md.Append(idemgrpc.MetadataKey, key)
	}
	return metadata.NewOutgoingContext(context.Background(), md)
}

func order(body string) *testpb.SimpleRequest {
	return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(body)}}
}

func reason(t *testing.T, err error) (codes.Code, string) {
	t.Helper()
	return status.Code(err), idemgrpc.Reason(err)
}

func TestRetryIsReplayed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var h1, h2 metadata.MD
	first, err := f.cli.UnaryCall(callCtx("alice", "k1"), order("tea"), grpc.Header(&h1))
	require.NoError(t, err)
	again, err := f.cli.UnaryCall(callCtx("alice", "k1"), order("tea"), grpc.Header(&h2))
	require.NoError(t, err)
	assert.Equal(t, "run-1", first.GetUsername())
	assert.Equal(t, "run-1", again.GetUsername(), "the first answer, replayed")
	assert.Equal(t, "tea", string(again.GetPayload().GetBody()))
	assert.False(t, idemgrpc.Replayed(h1))
	assert.True(t, idemgrpc.Replayed(h2))
	assert.EqualValues(t, 1, f.svc.runs.Load())

	other, err := f.cli.UnaryCall(callCtx("bob", "k1"), order("tea"))
	require.NoError(t, err)
	assert.Equal(t, "run-2", other.GetUsername(), "another caller's key space")
}

func TestRefusals(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, fixtureOpts{})
	f.svc.answer = func(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if string(req.GetPayload().GetBody()) == "slow" {
			<-release
		}
		return &testpb.SimpleResponse{}, nil
	}

	_, err := f.cli.UnaryCall(callCtx("alice", ""), order("x"))
	c, r := reason(t, err)
	assert.Equal(t, codes.InvalidArgument, c)
	assert.Equal(t, "KEY_MISSING", r)

	two := metadata.AppendToOutgoingContext(callCtx("alice", "a"), idemgrpc.MetadataKey, "b")
	_, err = f.cli.UnaryCall(two, order("x"))
	c, r = reason(t, err)
	assert.Equal(t, codes.InvalidArgument, c)
	assert.Equal(t, "KEY_INVALID", r)

	_, err = f.cli.UnaryCall(callCtx("alice", strings.Repeat("k", idem.MaxKeyLen+1)), order("x"))
	c, r = reason(t, err)
	assert.Equal(t, codes.InvalidArgument, c)
	assert.Equal(t, "KEY_INVALID", r)

	_, err = f.cli.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), idemgrpc.MetadataKey, "k"), order("x"))
	c, r = reason(t, err)
	assert.Equal(t, codes.Unauthenticated, c)
	assert.Equal(t, "TENANT_UNKNOWN", r)

	_, err = f.cli.UnaryCall(callCtx("alice", "reused"), order("tea"))
	require.NoError(t, err)
	_, err = f.cli.UnaryCall(callCtx("alice", "reused"), order("coffee"))
	c, r = reason(t, err)
	assert.Equal(t, codes.FailedPrecondition, c)
	assert.Equal(t, "KEY_REUSED", r)

	done := make(chan error)
	go func() {
		_, err := f.cli.UnaryCall(callCtx("alice", "busy"), order("slow"))
		done <- err
	}()
	require.Eventually(t, func() bool { return f.svc.runs.Load() == 2 }, 5*time.Second, time.Millisecond)
	_, err = f.cli.UnaryCall(callCtx("alice", "busy"), order("slow"))
	c, r = reason(t, err)
	assert.Equal(t, codes.Aborted, c)
	assert.Equal(t, "IN_PROGRESS", r)
	var delay time.Duration
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			delay = info.GetRetryDelay().AsDuration()
		}
	}
	assert.Equal(t, time.Second, delay, "with RetryInfo")
	close(release)
	require.NoError(t, <-done)

	require.NoError(t, f.st.Close())
	_, err = f.cli.UnaryCall(callCtx("alice", "after-close"), order("x"))
	c, r = reason(t, err)
	assert.Equal(t, codes.Unavailable, c)
	assert.Equal(t, "STORE_UNAVAILABLE", r)
}

func TestWhatIsStored(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var next error
	panics := false
	f.svc.answer = func(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if panics {
			panic("handler bug")
		}
		return &testpb.SimpleResponse{}, next
	}
	call := func(key string) error {
		_, err := f.cli.UnaryCall(callCtx("alice", key), order(key))
		return err
	}

	notFound, err := status.New(codes.NotFound, "no such card").WithDetails(&errdetails.ErrorInfo{Reason: "CARD_UNKNOWN", Domain: "shop"})
	require.NoError(t, err)
	next = idem.Permanent(notFound.Err())
	first := call("permanent")
	next = nil
	again := call("permanent")
	assert.Equal(t, codes.NotFound, status.Code(again), "a permanent error is replayed")
	assert.Equal(t, "no such card", status.Convert(first).Message(), "the handler's status, not the wrapper's text")
	assert.Equal(t, "no such card", status.Convert(again).Message())
	require.Len(t, status.Convert(again).Details(), 1, "with its details")
	assert.Equal(t, "CARD_UNKNOWN", status.Convert(again).Details()[0].(*errdetails.ErrorInfo).GetReason())
	assert.EqualValues(t, 1, f.svc.runs.Load())

	for i, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.NotFound} {
		key := fmt.Sprint("released-", i)
		next = status.Error(code, "try later")
		assert.Equal(t, code, status.Code(call(key)))
		next = nil
		assert.NoError(t, call(key), "%v released the key: the retry runs", code)
	}

	panics = true
	assert.Equal(t, codes.Internal, status.Code(call("panic")))
	panics = false
	assert.NoError(t, call("panic"), "a panic released the key")
}

func TestDuplicateWaitsWithWait(t *testing.T) {
	f := newFixture(t, fixtureOpts{server: idemgrpc.Options{Wait: 5 * time.Second}})
	started := make(chan struct{})
	f.svc.answer = func(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		return &testpb.SimpleResponse{Username: "the first"}, nil
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := f.cli.UnaryCall(callCtx("alice", "k"), order("x"))
		assert.NoError(t, err)
	})
	<-started
	var h metadata.MD
	resp, err := f.cli.UnaryCall(callCtx("alice", "k"), order("x"), grpc.Header(&h))
	require.NoError(t, err)
	assert.Equal(t, "the first", resp.GetUsername())
	assert.True(t, idemgrpc.Replayed(h))
	wg.Wait()
	assert.EqualValues(t, 1, f.svc.runs.Load())
}

func TestOnlyTheConfiguredMethods(t *testing.T) {
	f := newFixture(t, fixtureOpts{server: idemgrpc.Options{Methods: []string{"/grpc.testing.TestService/CacheableUnaryCall", "/grpc.testing.TestService/StreamingOutputCall"}}})
	for range 2 {
		_, err := f.cli.UnaryCall(callCtx("alice", ""), order("x"))
		require.NoError(t, err, "UnaryCall is not covered: no key needed")
	}
	assert.EqualValues(t, 2, f.svc.runs.Load())

	stream, err := f.cli.StreamingOutputCall(callCtx("alice", "k"), &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	assert.Equal(t, codes.Unimplemented, status.Code(err), "a streaming method in Methods is refused")
	assert.Contains(t, status.Convert(err).Message(), "streaming method")

	stream2, err := f.cli.FullDuplexCall(callCtx("alice", "k"))
	require.NoError(t, err)
	_, err = stream2.Recv()
	assert.Equal(t, codes.Unimplemented, status.Code(err))
	assert.NotContains(t, status.Convert(err).Message(), "idemgrpc", "streams not in Methods pass through (to the unimplemented handler)")
}

func TestKeyFromField(t *testing.T) {
	key := idemgrpc.KeyFromField("service")
	got, err := key(context.Background(), "/grpc.health.v1.Health/Check", &grpc_health_v1.HealthCheckRequest{Service: "req-42"})
	require.NoError(t, err)
	assert.Equal(t, "req-42", got)

	_, err = idemgrpc.KeyFromField("response_size")(context.Background(), unaryCall, order("x"))
	assert.ErrorContains(t, err, "not a string")

	md := metadata.NewIncomingContext(context.Background(), metadata.Pairs(idemgrpc.MetadataKey, "from-md"))
	got, err = idemgrpc.KeyFromField("request_id")(md, unaryCall, order("x"))
	require.NoError(t, err)
	assert.Equal(t, "from-md", got, "a request without the field falls back on the metadata")
	got, err = idemgrpc.KeyFromField("service")(md, "/grpc.health.v1.Health/Check", &grpc_health_v1.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, "from-md", got, "so does an empty field")
}

func TestStoreFailuresLogNoKey(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	f := newFixture(t, fixtureOpts{server: idemgrpc.Options{Logger: log}})
	require.NoError(t, f.st.Close())
	_, err := f.cli.UnaryCall(callCtx("alice", "secret-key-7"), order("x"))
	require.Equal(t, codes.Unavailable, status.Code(err))
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, logs.String(), "key_sha256=")
	assert.NotContains(t, logs.String(), "secret-key-7")
	assert.NotContains(t, status.Convert(err).Message(), "secret-key-7")
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewRefusesBadOptions(t *testing.T) {
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	sc, err := st.Scope("rpc", idem.ScopeOptions{})
	require.NoError(t, err)
	_, err = idemgrpc.New(sc, idemgrpc.Options{})
	assert.ErrorContains(t, err, "Tenant, or Global")
	_, err = idemgrpc.New(nil, idemgrpc.Options{Global: true})
	assert.Error(t, err)
	_, err = idemgrpc.New(sc, idemgrpc.Options{Global: true, Tenant: callerTenant})
	assert.Error(t, err)
	_, err = idemgrpc.New(sc, idemgrpc.Options{Global: true, Wait: -1, Methods: []string{unaryCall}})
	assert.Error(t, err)
	_, err = idemgrpc.New(sc, idemgrpc.Options{Global: true})
	assert.ErrorContains(t, err, "Options.Methods", "every method needing a key would break reads and health checks")
	_, err = idemgrpc.New(sc, idemgrpc.Options{Global: true, Methods: []string{unaryCall}})
	assert.NoError(t, err)
	assert.Panics(t, func() { idemgrpc.UnaryServerInterceptor(sc, idemgrpc.Options{}) })
}
