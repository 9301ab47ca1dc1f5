// Package idemgrpc gives unary gRPC methods the Idempotency-Key
// semantics of package idemhttp, on an idem store: a retried call runs
// its handler once, and every retry gets the first call's response (or
// its stored error) back, marked with the header idempotent-replayed:
// true.
//
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(auth, idemgrpc.UnaryServerInterceptor(orders, idemgrpc.Options{
//		Methods: []string{ordersv1.Orders_CreateOrder_FullMethodName},
//		Tenant:  caller,
//	})))
//
// A call's key comes from its idempotency-key metadata, or, per method,
// from a request field such as AIP-155's request_id ([KeyFromField]); its
// fingerprint is a SHA-256 of the full method name and the request's
// deterministic encoding. The client half, [UnaryClientInterceptor],
// sets one key per logical call and retries with it.
//
// # Status codes
//
//	missing key (when required), invalid key   InvalidArgument   KEY_MISSING, KEY_INVALID
//	caller unknown (Tenant failed)             Unauthenticated   TENANT_UNKNOWN
//	key reused with another request            FailedPrecondition KEY_REUSED
//	same request still running                 Aborted           IN_PROGRESS, with RetryInfo
//	                                           (or, with Wait, the first answer once ready)
//	stored response not replayable (too large) FailedPrecondition RESPONSE_UNAVAILABLE
//	owner crashed, scope uses OrphanReport     FailedPrecondition OUTCOME_UNKNOWN
//	store failure                              Unavailable       STORE_UNAVAILABLE, with RetryInfo
//
// Every refusal carries a google.rpc.ErrorInfo with that reason and the
// domain "idem.idemkit.github.io", so that clients tell them apart by
// reason, not by code. A key reused for another request is
// FailedPrecondition rather than InvalidArgument: the request is valid on
// its own, and it is the key's record that refuses it.
//
// # What is stored
//
// An OK response is stored, and so is an error the handler marks with
// [idem.Permanent] (its code, message and details are replayed). Any other
// error — Unavailable, DeadlineExceeded, ResourceExhausted, an
// application error not marked — and a panic release the key, so that a
// retry runs the handler again. The handler of a claimed call runs to its
// end even if the caller goes (an attempt's deadline passed, the
// connection dropped): the retry must get that run's answer, not start
// another run; its context keeps the call's values but not its deadline,
// so bound long work yourself. Header and trailer metadata the handler
// sets are sent on its own call and not replayed.
//
// Streaming methods are not covered: a client stream's messages arrive
// after the handler has begun, so no fingerprint exists before the work
// starts. [StreamServerInterceptor] refuses the streaming methods listed
// in Options.Methods, so that a configuration that means to cover one
// fails loudly instead of silently running it unguarded.
package idemgrpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/idemkit/idem"
)

// Options configures the server interceptors. Tenant, or Global, is
// required.
type Options struct {
	// Methods are the full method names ("/orders.v1.Orders/Create") the
	// interceptor applies to, and must not be empty: the methods that
	// change state. Other calls (reads, health checks) pass through
	// untouched.
	Methods []string
	// Key returns a call's key. Nil means the idempotency-key metadata
	// ([MetadataKey]); see [KeyFromField] for a request field. An empty key
	// is a missing key.
	Key func(ctx context.Context, fullMethod string, req proto.Message) (string, error)
	// Optional lets calls without a key through, without idempotency.
	// By default a key is required (InvalidArgument without one).
	Optional bool

	// Tenant names the caller, from the authenticated call's context (a
	// user or account id): two callers using the same key never see each
	// other's responses. An error or an empty name is Unauthenticated.
	Tenant func(ctx context.Context) (string, error)
	// Global shares one key space among all callers, instead of Tenant.
	Global bool

	// Wait is how long a duplicate of a call that is still running waits
	// for its answer before it gets Aborted. Zero means it gets Aborted at
	// once.
	Wait time.Duration
	// RetryAfter is the retry delay that Aborted (in progress) and
	// Unavailable answers suggest in their RetryInfo. Zero means 1 s.
	RetryAfter time.Duration
	// Logger receives store failures, with the key as a hash, never the
	// key itself. Nil means slog.Default().
	Logger *slog.Logger
}

// MetadataKey is the metadata key that carries an idempotency key.
const MetadataKey = "idempotency-key"

// ReplayedHeader is the header metadata key set to "true" on a replayed
// answer.
const ReplayedHeader = "idempotent-replayed"

type server struct {
	scope *idem.Scope
	opts  Options
}

func newServer(scope *idem.Scope, opts Options) (*server, error) {
	switch {
	case scope == nil:
		return nil, errors.New("idemgrpc: a scope is required")
	case opts.Tenant == nil && !opts.Global:
		return nil, errors.New("idemgrpc: set Options.Tenant, or Global to share one key space among all callers")
	case opts.Tenant != nil && opts.Global:
		return nil, errors.New("idemgrpc: Tenant and Global exclude each other")
	case opts.Wait < 0 || opts.RetryAfter < 0:
		return nil, errors.New("idemgrpc: Wait and RetryAfter must not be negative")
	case len(opts.Methods) == 0:
		// Every unary method would need a key: reads and health checks
		// too, which then fail.
		return nil, errors.New("idemgrpc: name the methods to cover in Options.Methods (those that change state)")
	}
	if opts.Key == nil {
		opts.Key = metadataKey
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &server{scope: scope, opts: opts}, nil
}

// UnaryServerInterceptor returns the interceptor for the unary methods
// of scope's service. It panics if opts are invalid (see [New] for an
// error instead).
func UnaryServerInterceptor(scope *idem.Scope, opts Options) grpc.UnaryServerInterceptor {
	s, err := newServer(scope, opts)
	if err != nil {
		panic(err)
	}
	return s.unary
}

// New is [UnaryServerInterceptor] with an error for invalid options.
func New(scope *idem.Scope, opts Options) (grpc.UnaryServerInterceptor, error) {
	s, err := newServer(scope, opts)
	if err != nil {
		return nil, err
	}
	return s.unary, nil
}

// StreamServerInterceptor refuses, with Unimplemented, the streaming
// methods listed in Options.Methods (idempotency does not cover streams),
// and lets the other streams through.
func StreamServerInterceptor(opts Options) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if slices.Contains(opts.Methods, info.FullMethod) {
			return status.Errorf(codes.Unimplemented, "idemgrpc: %s is a streaming method, which idempotency keys do not cover", info.FullMethod)
		}
		return handler(srv, ss)
	}
}

func (s *server) covers(method string) bool { return slices.Contains(s.opts.Methods, method) }

func (s *server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !s.covers(info.FullMethod) {
		return handler(ctx, req)
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "idemgrpc: %s: the request is not a protocol buffer message", info.FullMethod)
	}
	key, err := s.opts.Key(ctx, info.FullMethod, msg)
	switch {
	case err != nil:
		return nil, refusal(codes.InvalidArgument, reasonKeyInvalid, err.Error(), 0)
	case key == "" && s.opts.Optional:
		return handler(ctx, req)
	case key == "":
		return nil, refusal(codes.InvalidArgument, reasonKeyMissing, "an idempotency key is required", 0)
	}
	scope := s.scope
	if s.opts.Tenant != nil {
		tenant, err := s.opts.Tenant(ctx)
		if err != nil || tenant == "" {
			return nil, refusal(codes.Unauthenticated, reasonTenantUnknown, "the caller could not be identified", 0)
		}
		scope = scope.Tenant(tenant)
	}
	fingerprint, err := requestFingerprint(info.FullMethod, msg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "idemgrpc: encoding the request: %v", err)
	}

	var resp any
	var handlerErr error
	ran := false
	run := func(context.Context) ([]byte, error) {
		ran = true
		// The handler keeps the call's values but runs to its end even if
		// the caller goes (a retry with the key must get this run's
		// answer, not start another run).
		resp, handlerErr = handler(context.WithoutCancel(ctx), req)
		return s.record(resp, handlerErr)
	}
	var res idem.Result
	if s.opts.Wait > 0 {
		wait, cancel := context.WithTimeout(ctx, s.opts.Wait)
		defer cancel()
		res, err = scope.Do(wait, key, fingerprint, run)
	} else {
		var cl *idem.Claim
		if cl, err = scope.Claim(ctx, key, fingerprint); err == nil {
			if cl.Owned() {
				_, err = cl.Run(ctx, run)
			} else {
				res, err = cl.Result()
			}
		}
	}
	if ran {
		if err != nil && err != errRelease {
			s.logStoreError(ctx, info.FullMethod, key, err)
		}
		if errors.Is(handlerErr, idem.ErrPermanent) {
			return resp, handlerStatus(handlerErr).Err() // as its replays will have it
		}
		return resp, handlerErr
	}
	if err != nil {
		return nil, s.refuse(ctx, info.FullMethod, key, err)
	}
	return s.replay(ctx, info.FullMethod, key, res.Value)
}

// handlerStatus is the status of a handler's error: the status it wraps
// (idem.Permanent(status.Error(...)), say) as it is, without the wrapper's
// text in its message.
func handlerStatus(err error) *status.Status {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus()
	}
	return status.New(codes.Unknown, err.Error())
}

// errRelease tells the store not to keep a call's outcome.
var errRelease = errors.New("idemgrpc: answer not stored")

// record is what the store keeps of a handler's answer, or errRelease.
func (s *server) record(resp any, err error) ([]byte, error) {
	var rec []byte
	switch {
	case err == nil:
		msg, ok := resp.(proto.Message)
		if !ok {
			return nil, errRelease
		}
		var merr error
		if rec, merr = encodeResponse(msg); merr != nil {
			return nil, errRelease
		}
	case errors.Is(err, idem.ErrPermanent):
		rec = encodeStatus(handlerStatus(err))
	default:
		return nil, errRelease
	}
	if len(rec) > s.scope.Options().MaxValueSize {
		code := codes.OK
		if err != nil {
			code = status.Code(err)
		}
		rec = encodeUnavailable(code)
	}
	return rec, nil
}

// replay answers with a stored record.
func (s *server) replay(ctx context.Context, method, key string, value []byte) (any, error) {
	rec, err := decodeRecord(value)
	if err != nil {
		s.logStoreError(ctx, method, key, err)
		return nil, refusal(codes.Unavailable, reasonStoreUnavailable, "", s.opts.RetryAfter)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(ReplayedHeader, "true"))
	switch {
	case rec.unavailable:
		return nil, refusal(codes.FailedPrecondition, reasonResponseUnavailable,
			"the first call completed with "+rec.status.Code().String()+"; its answer was too large to keep", 0)
	case rec.status != nil:
		return nil, rec.status.Err()
	}
	return rec.response, nil
}

// refuse is the status for an error of the store.
func (s *server) refuse(ctx context.Context, method, key string, err error) error {
	switch {
	case errors.Is(err, idem.ErrFingerprintMismatch):
		return refusal(codes.FailedPrecondition, reasonKeyReused, "this key was first used with a different request", 0)
	case errors.Is(err, idem.ErrInProgress):
		return refusal(codes.Aborted, reasonInProgress, "a call with this key is in progress", s.opts.RetryAfter)
	case errors.Is(err, idem.ErrValueTooLarge):
		return refusal(codes.FailedPrecondition, reasonResponseUnavailable, "the first answer was too large to keep", 0)
	case errors.Is(err, idem.ErrOutcomeUnknown):
		return refusal(codes.FailedPrecondition, reasonOutcomeUnknown, "the server stopped while handling the first call", 0)
	case errors.Is(err, idem.ErrInvalidKey):
		return refusal(codes.InvalidArgument, reasonKeyInvalid, "", 0)
	case errors.Is(err, idem.ErrInvalidScope):
		return refusal(codes.Unauthenticated, reasonTenantUnknown, "", 0)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		// Wait ran out as the first call ended: it is still someone's.
		return refusal(codes.Aborted, reasonInProgress, "a call with this key is in progress", s.opts.RetryAfter)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	s.logStoreError(ctx, method, key, err)
	return refusal(codes.Unavailable, reasonStoreUnavailable, "", s.opts.RetryAfter)
}

// logStoreError logs a store failure; the key appears only as a hash.
func (s *server) logStoreError(ctx context.Context, method, key string, err error) {
	sum := sha256.Sum256([]byte(key))
	s.opts.Logger.ErrorContext(ctx, "idemgrpc: store failed", "key_sha256", hex.EncodeToString(sum[:8]), "method", method, "err", err)
}

// requestFingerprint is a SHA-256 of the method and the request's
// deterministic encoding: the same request sent again has the same one.
func requestFingerprint(method string, req proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil), nil
}
