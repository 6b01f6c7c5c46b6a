package otlp

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Spans are built as OTLP protobufs and handed to the SDK's OTLP client
// (otlptrace.Client: its gRPC or HTTP transport, TLS, headers and
// environment variables), not as SDK spans through its exporter: the
// exporter's conversion of each span (a snapshot, then a regrouping by
// resource and scope of every batch) cost more CPU than building the span.
// The conversion of attributes below is the SDK's, for the types used.

func protoValue(v attribute.Value) *commonpb.AnyValue {
	switch v.Type() {
	case attribute.BOOL:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.INT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.FLOAT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	case attribute.STRINGSLICE:
		ss := v.AsStringSlice()
		vals := make([]*commonpb.AnyValue, len(ss))
		for i, s := range ss {
			vals[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}
	default:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.Emit()}}
	}
}

// protoAttributes converts kv, in one allocation for the KeyValues.
func protoAttributes(kv []attribute.KeyValue) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, len(kv))
	store := make([]commonpb.KeyValue, len(kv))
	for i, a := range kv {
		store[i] = commonpb.KeyValue{Key: string(a.Key), Value: protoValue(a.Value)}
		out[i] = &store[i]
	}
	return out
}

func protoResource(r *resource.Resource) *resourcepb.Resource {
	return &resourcepb.Resource{Attributes: protoAttributes(r.Attributes())}
}

// span is one finished span.
type span = tracepb.Span

func newSpan(traceID [16]byte, id, parent [8]byte, name string, start, end time.Time) *span {
	s := &tracepb.Span{
		TraceId:           traceID[:],
		SpanId:            id[:],
		Name:              name,
		Kind:              tracepb.Span_SPAN_KIND_INTERNAL,
		StartTimeUnixNano: uint64(start.UnixNano()),
		EndTimeUnixNano:   uint64(end.UnixNano()),
		Flags:             uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) | 1, // sampled, local parent
	}
	if parent != ([8]byte{}) {
		s.ParentSpanId = parent[:]
	}
	return s
}

func setError(s *span, description string) {
	s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: description}
}

// request wraps spans for one OTLP request: one resource (this node), one
// instrumentation scope (routetrace).
func (e *Exporter) request(spans []*span) []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{{
		Resource: e.resource,
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: scopeName, Version: e.opts.Version},
			Spans: spans,
		}},
	}}
}

const scopeName = "github.com/routetrace/routetrace"
