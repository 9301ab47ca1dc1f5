package idemotel_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemotel"
	"github.com/idemkit/idem/internal/replaybench"
)

type rig struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	st     *idem.Store
	sc     *idem.Scope
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	r := &rig{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	obs, err := idemotel.New(idemotel.Options{
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader)),
		TracerProvider: r.tp,
	})
	require.NoError(tb, err)
	r.st, err = idem.Open(idem.Options{InMemory: true, GCInterval: -1, Observer: obs})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = r.st.Close() })
	r.sc, err = r.st.Scope("payments", idem.ScopeOptions{})
	require.NoError(tb, err)
	return r
}

// points returns the data points of every metric, as "name{attrs}" →
// value (the count, for a histogram).
func (r *rig) points(t *testing.T) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]float64{}
	label := func(name string, set attribute.Set) string {
		var parts []string
		for _, kv := range set.ToSlice() {
			parts = append(parts, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
		}
		return name + "{" + strings.Join(parts, ",") + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, idemotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[label(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[label(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[label(m.Name, p.Attributes)] = float64(p.Count)
				}
			}
		}
	}
	return out
}

func TestMetricsAndSpans(t *testing.T) {
	r := newRig(t)
	ctx, parent := r.tp.Tracer("test").Start(context.Background(), "POST /payments")
	ok := func(context.Context) ([]byte, error) { return []byte("charged"), nil }
	_, err := r.sc.Do(ctx, "secret-key-1", []byte("fp"), ok)
	require.NoError(t, err)
	_, err = r.sc.Do(ctx, "secret-key-1", []byte("fp"), ok)
	require.NoError(t, err)
	_, err = r.sc.Do(ctx, "secret-key-1", []byte("other"), ok)
	require.ErrorIs(t, err, idem.ErrFingerprintMismatch)
	parent.End()
	_, err = r.st.GC(context.Background())
	require.NoError(t, err)

	got := r.points(t)
	for name, want := range map[string]float64{
		"idem.calls{idem.outcome=executed,idem.scope=payments}":               1,
		"idem.calls{idem.outcome=replayed,idem.scope=payments}":               1,
		"idem.calls{idem.outcome=mismatch,idem.scope=payments}":               1,
		"idem.call.duration{idem.outcome=replayed,idem.scope=payments}":       1,
		"idem.execution.duration{idem.outcome=completed,idem.scope=payments}": 1,
		"idem.keys{idem.scope=payments}":                                      1,
		"idem.in_flight{}":                                                    0,
		"idem.collections{}":                                                  1,
	} {
		assert.Equal(t, want, got[name], name)
	}

	var calls []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		for _, kv := range s.Attributes() {
			assert.NotContains(t, kv.Value.String(), "secret-key", "no key in span attributes")
		}
		if s.Name() == "idem.call" {
			calls = append(calls, s)
		}
	}
	require.Len(t, calls, 3)
	for _, s := range calls {
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "a child of the caller's span")
		assert.False(t, s.EndTime().Before(s.StartTime()))
	}
	assert.Contains(t, calls[1].Attributes(), idemotel.AttrOutcome.String("replayed"))
}

// BenchmarkReplay compares a cached replay without an observer, with the
// OpenTelemetry one recording metrics only (SDK meter, no-op tracer), and
// with metrics and a sampled span per call (SDK tracer, no exporter), in
// one run.
//
//	go test -run '^$' -bench Replay -count 5 ./idemotel
func BenchmarkReplay(b *testing.B) {
	for _, mode := range []string{"none", "metrics", "metrics+spans"} {
		b.Run(mode, func(b *testing.B) {
			opts := idem.Options{InMemory: true, GCInterval: -1}
			if mode != "none" {
				var tp trace.TracerProvider = tracenoop.NewTracerProvider()
				if mode == "metrics+spans" {
					tp = sdktrace.NewTracerProvider()
				}
				obs, err := idemotel.New(idemotel.Options{
					MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
					TracerProvider: tp,
				})
				require.NoError(b, err)
				opts.Observer = obs
			}
			replaybench.Run(b, opts)
		})
	}
}
