package jaegertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
)

// Trace is one trace as the query API returns it.
type Trace struct {
	ID    string // 32 hex digits
	Spans []Span // in the order Jaeger returns them
}

// Span is one span as Jaeger stores it (Jaeger's v1 model, into which it
// translates OTLP).
//
// What the translation does, and so what a test can expect:
//   - Start and Duration have microsecond precision (the v1 model's).
//   - Attributes' values are strings: strings as they are, bools "true" or
//     "false", ints in decimal, doubles in Go's shortest form (1.5, 1e+21),
//     bytes in base64, and slices and maps as the JSON text Jaeger makes of
//     them (["a","b"], [1,2]).
//   - The span's status, kind and instrumentation scope are tags in the v1
//     model (otel.status_code, otel.status_description, error, span.kind,
//     otel.scope.name, otel.scope.version): they are taken out of
//     Attributes into their fields here, so a span's own attribute of one
//     of those names would be lost.
type Span struct {
	TraceID, SpanID string // hex, 32 and 16 digits
	// ParentSpanID is the CHILD_OF reference's span ID, "" for a root.
	ParentSpanID string
	Name         string
	// Kind is "client", "server", "producer", "consumer" or "internal"
	// ("" when Jaeger stores none: an unspecified kind).
	Kind       string
	Start      time.Time
	Duration   time.Duration
	Attributes map[string]string
	// Resource is the resource's attributes (the v1 model's process
	// tags), service.name included.
	Resource map[string]string
	// StatusError is an error status; StatusMessage its description. An
	// OK status is StatusOK, an unset one neither.
	StatusError, StatusOK bool
	StatusMessage         string
	// Scope and ScopeVersion are the instrumentation scope's.
	Scope, ScopeVersion string
	// Links are the span's links (FOLLOWS_FROM references), in order.
	Links []Link
}

// Link is a span link.
type Link struct{ TraceID, SpanID string }

// Tags that hold the OTLP span's fields, not its attributes.
const (
	tagStatusCode    = "otel.status_code"
	tagStatusMessage = "otel.status_description"
	tagError         = "error"
	tagKind          = "span.kind"
	tagScope         = "otel.scope.name"
	tagScopeVersion  = "otel.scope.version"
)

// searchLimit is the most traces a search returns: a test's service has
// at most a few thousand, and the default (20) would cut them short.
const searchLimit = 100000

// v1 model, as /api/traces renders it.
type apiResponse[T any] struct {
	Data   T          `json:"data"`
	Errors []apiError `json:"errors"`
}

type apiError struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

type apiTrace struct {
	TraceID   string                `json:"traceID"`
	Spans     []apiSpan             `json:"spans"`
	Processes map[string]apiProcess `json:"processes"`
}

type apiSpan struct {
	TraceID       string   `json:"traceID"`
	SpanID        string   `json:"spanID"`
	OperationName string   `json:"operationName"`
	References    []apiRef `json:"references"`
	StartTime     int64    `json:"startTime"` // µs since the epoch
	Duration      int64    `json:"duration"`  // µs
	Tags          []apiTag `json:"tags"`
	ProcessID     string   `json:"processID"`
}

type apiRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type apiTag struct {
	Key   string          `json:"key"`
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

type apiProcess struct {
	ServiceName string   `json:"serviceName"`
	Tags        []apiTag `json:"tags"`
}

// Services lists the services Jaeger has spans of.
func (j *Jaeger) Services(ctx context.Context) ([]string, error) {
	var resp apiResponse[[]string]
	if err := j.get(ctx, "/api/services", nil, &resp); err != nil {
		return nil, err
	}
	sort.Strings(resp.Data)
	return resp.Data, nil
}

// Traces returns the traces with a span of service whose attributes (or
// resource) include every one of tags (none: every trace of service), all
// of them at any time. Spans come raw: Jaeger's adjusters (clock skew,
// deduplication) are off, so a span stored twice shows twice.
func (j *Jaeger) Traces(ctx context.Context, service string, tags map[string]string) ([]Trace, error) {
	q := url.Values{
		"service": {service},
		"limit":   {strconv.Itoa(searchLimit)},
		// All time, not the default two days: tests send fixed
		// timestamps. end allows spans stamped a little ahead.
		"start": {"0"},
		"end":   {strconv.FormatInt(time.Now().Add(24*time.Hour).UnixMicro(), 10)},
		"raw":   {"true"},
	}
	if len(tags) > 0 {
		b, err := json.Marshal(tags)
		if err != nil {
			return nil, fmt.Errorf("encoding the tags of a trace search: %w", err)
		}
		q.Set("tags", string(b))
	}
	var resp apiResponse[[]apiTrace]
	if err := j.get(ctx, "/api/traces", q, &resp); err != nil {
		return nil, err
	}
	return convertTraces(resp.Data)
}

// Trace returns the trace of traceID (32 hex digits).
func (j *Jaeger) Trace(ctx context.Context, traceID string) (Trace, error) {
	var resp apiResponse[[]apiTrace]
	if err := j.get(ctx, "/api/traces/"+url.PathEscape(traceID), url.Values{"raw": {"true"}}, &resp); err != nil {
		return Trace{}, err
	}
	ts, err := convertTraces(resp.Data)
	if err != nil {
		return Trace{}, err
	}
	if len(ts) != 1 {
		return Trace{}, fmt.Errorf("jaeger returned %d traces for trace ID %s", len(ts), traceID)
	}
	return ts[0], nil
}

// WaitSpans polls until Jaeger holds at least n spans of service and
// returns all of them, ordered by start time then span ID. A span is
// queryable a moment after the exporter's call returns (up to ~200 ms),
// hence the polling; ctx bounds the wait.
func (j *Jaeger) WaitSpans(ctx context.Context, service string, n int) ([]Span, error) {
	var (
		spans   []Span
		lastErr error
	)
	for {
		traces, err := j.Traces(ctx, service, nil)
		if err == nil {
			spans = spans[:0]
			for _, tr := range traces {
				spans = append(spans, tr.Spans...)
			}
			if len(spans) >= n {
				sort.Slice(spans, func(a, b int) bool {
					if !spans[a].Start.Equal(spans[b].Start) {
						return spans[a].Start.Before(spans[b].Start)
					}
					return spans[a].SpanID < spans[b].SpanID
				})
				return spans, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return spans, fmt.Errorf("waiting for %d spans of %q: %d so far, last error %v: %w", n, service, len(spans), lastErr, ctx.Err())
			}
			return spans, fmt.Errorf("waiting for %d spans of %q: %d so far: %w", n, service, len(spans), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (j *Jaeger) get(ctx context.Context, path string, q url.Values, into any) error {
	u := j.QueryURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("querying jaeger: %w", err)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("querying jaeger %s (is it running? Stop/Kill without Restart?): %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading jaeger's answer to %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(into); err != nil {
		return fmt.Errorf("decoding jaeger's answer to %s: %w", path, err)
	}
	return nil
}

func convertTraces(in []apiTrace) ([]Trace, error) {
	out := make([]Trace, 0, len(in))
	for _, at := range in {
		tr := Trace{ID: at.TraceID, Spans: make([]Span, 0, len(at.Spans))}
		procs := map[string]map[string]string{}
		for id, p := range at.Processes {
			res, err := tagMap(p.Tags)
			if err != nil {
				return nil, fmt.Errorf("trace %s, process %s: %w", at.TraceID, id, err)
			}
			// The v1 model keeps service.name out of the process tags.
			res["service.name"] = p.ServiceName
			procs[id] = res
		}
		for _, as := range at.Spans {
			s, err := convertSpan(as, procs)
			if err != nil {
				return nil, fmt.Errorf("trace %s, span %s: %w", at.TraceID, as.SpanID, err)
			}
			tr.Spans = append(tr.Spans, s)
		}
		out = append(out, tr)
	}
	return out, nil
}

func convertSpan(as apiSpan, procs map[string]map[string]string) (Span, error) {
	attrs, err := tagMap(as.Tags)
	if err != nil {
		return Span{}, err
	}
	s := Span{
		TraceID:  as.TraceID,
		SpanID:   as.SpanID,
		Name:     as.OperationName,
		Start:    time.UnixMicro(as.StartTime).UTC(),
		Duration: time.Duration(as.Duration) * time.Microsecond,
		Resource: procs[as.ProcessID],
	}
	if s.Resource == nil {
		return Span{}, fmt.Errorf("process %q not in the trace's processes", as.ProcessID)
	}
	for _, r := range as.References {
		switch r.RefType {
		case "CHILD_OF":
			if s.ParentSpanID == "" && r.TraceID == as.TraceID {
				s.ParentSpanID = r.SpanID
				continue
			}
			s.Links = append(s.Links, Link{TraceID: r.TraceID, SpanID: r.SpanID})
		default:
			s.Links = append(s.Links, Link{TraceID: r.TraceID, SpanID: r.SpanID})
		}
	}
	switch attrs[tagStatusCode] {
	case "ERROR":
		s.StatusError = true
	case "OK":
		s.StatusOK = true
	}
	s.StatusMessage = attrs[tagStatusMessage]
	s.Kind = attrs[tagKind]
	s.Scope, s.ScopeVersion = attrs[tagScope], attrs[tagScopeVersion]
	for _, k := range []string{tagStatusCode, tagStatusMessage, tagError, tagKind, tagScope, tagScopeVersion} {
		delete(attrs, k)
	}
	s.Attributes = attrs
	return s, nil
}

// tagMap renders tags' values as strings (see Span).
func tagMap(tags []apiTag) (map[string]string, error) {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		var v string
		switch t.Type {
		case "string", "binary":
			// binary is base64 in a JSON string.
			if err := json.Unmarshal(t.Value, &v); err != nil {
				return nil, fmt.Errorf("tag %s of type %s: %w", t.Key, t.Type, err)
			}
		case "bool", "int64", "float64":
			// The JSON literal: true/false, the decimal or the float as
			// Jaeger wrote it.
			v = string(bytes.TrimSpace(t.Value))
		default:
			return nil, fmt.Errorf("tag %s: unknown type %q", t.Key, t.Type)
		}
		m[t.Key] = v
	}
	return m, nil
}
