package idemgrpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/idemkit/idem"
)

// metadataKey is the default Options.Key: the one idempotency-key value
// of the call's metadata.
func metadataKey(ctx context.Context, _ string, _ proto.Message) (string, error) {
	values := metadata.ValueFromIncomingContext(ctx, MetadataKey)
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", errors.New("exactly one " + MetadataKey + " value is allowed")
	}
	return checkKey(values[0])
}

// KeyFromField returns an Options.Key that reads a call's key from the
// request's string field of that name (AIP-155's request_id, say). A
// request without the field, or with the field empty, falls back on the
// idempotency-key metadata.
func KeyFromField(name string) func(ctx context.Context, fullMethod string, req proto.Message) (string, error) {
	return func(ctx context.Context, method string, req proto.Message) (string, error) {
		m := req.ProtoReflect()
		f := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if f == nil {
			return metadataKey(ctx, method, req)
		}
		if f.Kind() != protoreflect.StringKind || f.IsList() || f.IsMap() {
			return "", fmt.Errorf("field %s of %s is not a string", name, m.Descriptor().FullName())
		}
		if key := m.Get(f).String(); key != "" {
			return checkKey(key)
		}
		return metadataKey(ctx, method, req)
	}
}

// checkKey refuses keys the store would refuse, with a reason.
func checkKey(key string) (string, error) {
	if len(key) > idem.MaxKeyLen {
		return "", fmt.Errorf("key longer than %d bytes", idem.MaxKeyLen)
	}
	for i := range len(key) {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return "", errors.New("key must be printable ASCII")
		}
	}
	return key, nil
}
