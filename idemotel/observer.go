// Package idemotel reports an idem store to OpenTelemetry: metrics for
// every call, execution, wait, orphan and collection, gauges of the
// store's keys and bytes per scope, and a span per call, child of the
// caller's span. It uses OpenTelemetry's metric and trace APIs only; the
// application chooses the SDK and exporters.
//
//	obs, err := idemotel.New(idemotel.Options{}) // the global providers
//	st, err := idem.Open(idem.Options{Dir: dir, Observer: obs})
//
// Metrics (attributes in brackets):
//
//	idem.calls                 counter    [idem.scope, idem.outcome]  calls by outcome: executed, replayed, mismatch, in_progress, …
//	idem.call.duration         histogram  s [idem.scope, idem.outcome]
//	idem.execution.duration    histogram  s [idem.scope, idem.outcome]  completed, failed, released, abandoned, lease_lost
//	idem.wait.duration         histogram  s [idem.scope]  duplicates waiting for a running call
//	idem.orphans               counter    [idem.scope, idem.orphan.policy]
//	idem.collections           counter
//	idem.reclaimed.records     counter
//	idem.reclaimed.bytes       counter    By
//	idem.keys, idem.bytes      gauges     [idem.scope]  what the store holds now
//	idem.in_flight             gauge      claims held now
//
// Spans are named "idem.call" and carry idem.scope and idem.outcome; a
// call whose outcome is error has the span status Error. Keys never
// become attributes. A span is made once its call has returned (with the
// call's start and end times), so spans the work inside Do starts are its
// siblings, children of the caller's span, not its children.
package idemotel

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemkit/idem"
)

// Options configures an Observer.
type Options struct {
	// MeterProvider and TracerProvider default to the global ones
	// (otel.GetMeterProvider, otel.GetTracerProvider).
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// ScopeName is the instrumentation scope of the meter and tracer.
const ScopeName = "github.com/idemkit/idem/idemotel"

// Attribute keys.
const (
	AttrScope        = attribute.Key("idem.scope")
	AttrOutcome      = attribute.Key("idem.outcome")
	AttrOrphanPolicy = attribute.Key("idem.orphan.policy")
)

// Observer is an idem.Observer and idem.StoreObserver that records to
// OpenTelemetry. It is safe for concurrent use.
type Observer struct {
	meter  metric.Meter
	tracer trace.Tracer

	calls, orphans, collections, reclaimedRecords, reclaimedBytes metric.Int64Counter
	callDuration, executionDuration, waitDuration                 metric.Float64Histogram

	mu   sync.RWMutex
	sets map[labelKey]*labelSet
}

// New returns an Observer on the providers of opts.
func New(opts Options) (*Observer, error) {
	mp, tp := opts.MeterProvider, opts.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	o := &Observer{meter: mp.Meter(ScopeName), tracer: tp.Tracer(ScopeName), sets: map[labelKey]*labelSet{}}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := o.meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	seconds := func(name, desc string) metric.Float64Histogram {
		h, err := o.meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
		errs = append(errs, err)
		return h
	}
	o.calls = counter("idem.calls", "{call}", "Calls of Do and Claim, by outcome: executed, replayed, mismatch, in_progress, outcome_unknown, scope_full, disk_full, invalid, canceled, error.")
	o.orphans = counter("idem.orphans", "{record}", "Claims found left by an owner that died or lost its lease.")
	o.collections = counter("idem.collections", "{collection}", "Runs of the expiry collector.")
	o.reclaimedRecords = counter("idem.reclaimed.records", "{record}", "Expired records the collector deleted.")
	o.reclaimedBytes = counter("idem.reclaimed.bytes", "By", "Bytes of the expired records the collector deleted.")
	o.callDuration = seconds("idem.call.duration", "Duration of calls of Do (execution included) and Claim.")
	o.executionDuration = seconds("idem.execution.duration", "Time from a claim to its end, by outcome: completed, failed, released, abandoned, lease_lost.")
	o.waitDuration = seconds("idem.wait.duration", "Time a duplicate waited for a running call of its key.")
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Observe records e.
func (o *Observer) Observe(ctx context.Context, e idem.Event) {
	switch e.Kind {
	case idem.EventCall:
		ls := o.labels(e.Scope, string(e.Outcome), "")
		o.calls.Add(ctx, 1, ls.add...)
		o.callDuration.Record(ctx, e.Duration.Seconds(), ls.rec...)
		o.span(ctx, e)
	case idem.EventExecution:
		o.executionDuration.Record(ctx, e.Duration.Seconds(), o.labels(e.Scope, string(e.Outcome), "").rec...)
	case idem.EventWait:
		o.waitDuration.Record(ctx, e.Duration.Seconds(), o.labels(e.Scope, "", "").rec...)
	case idem.EventOrphan:
		o.orphans.Add(ctx, 1, o.labels(e.Scope, "", e.Policy.String()).add...)
	case idem.EventCollection:
		o.collections.Add(ctx, 1)
		o.reclaimedRecords.Add(ctx, e.Reclaimed)
		o.reclaimedBytes.Add(ctx, e.ReclaimedBytes)
	}
}

// span records the call as a span that began Duration ago. Its
// attributes are set only on a span that records.
func (o *Observer) span(ctx context.Context, e idem.Event) {
	end := time.Now()
	_, span := o.tracer.Start(ctx, "idem.call", trace.WithTimestamp(end.Add(-e.Duration)), internalSpan)
	if span.IsRecording() {
		span.SetAttributes(AttrScope.String(e.Scope), AttrOutcome.String(string(e.Outcome)))
		if e.Outcome == idem.OutcomeError {
			span.SetStatus(codes.Error, "the store failed")
		}
	}
	span.End(trace.WithTimestamp(end))
}

var internalSpan = trace.WithSpanKind(trace.SpanKindInternal)

type labelKey struct{ scope, outcome, policy string }

// labelSet is a set of labels in the shapes the instruments take, made
// once per set so that recording allocates nothing of its own.
type labelSet struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// labels returns the label set of scope, outcome and policy.
func (o *Observer) labels(scope, outcome, policy string) *labelSet {
	k := labelKey{scope, outcome, policy}
	o.mu.RLock()
	ls, ok := o.sets[k]
	o.mu.RUnlock()
	if ok {
		return ls
	}
	kv := []attribute.KeyValue{AttrScope.String(scope)}
	if outcome != "" {
		kv = append(kv, AttrOutcome.String(outcome))
	}
	if policy != "" {
		kv = append(kv, AttrOrphanPolicy.String(policy))
	}
	set := metric.WithAttributeSet(attribute.NewSet(kv...))
	ls = &labelSet{add: []metric.AddOption{set}, rec: []metric.RecordOption{set}}
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.sets[k]; ok {
		return prev
	}
	o.sets[k] = ls
	return ls
}

// ObserveStore registers the gauges of st: its keys and bytes per scope,
// and its claims in flight, read when the meter collects.
func (o *Observer) ObserveStore(st *idem.Store) {
	keys, err1 := o.meter.Int64ObservableGauge("idem.keys", metric.WithUnit("{key}"), metric.WithDescription("Keys the store holds, by scope."))
	size, err2 := o.meter.Int64ObservableGauge("idem.bytes", metric.WithUnit("By"), metric.WithDescription("Bytes of the records the store holds, by scope."))
	inFlight, err3 := o.meter.Int64ObservableUpDownCounter("idem.in_flight", metric.WithUnit("{claim}"), metric.WithDescription("Claims held now."))
	if err := errors.Join(err1, err2, err3); err != nil {
		otel.Handle(err)
		return
	}
	_, err := o.meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		s := st.Stats()
		for name, sc := range s.Scopes {
			set := metric.WithAttributeSet(attribute.NewSet(AttrScope.String(name)))
			obs.ObserveInt64(keys, sc.Keys, set)
			obs.ObserveInt64(size, sc.Bytes, set)
		}
		obs.ObserveInt64(inFlight, s.InFlight)
		return nil
	}, keys, size, inFlight)
	if err != nil {
		otel.Handle(err)
	}
}
