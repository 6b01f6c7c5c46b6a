package otlp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	"golang.org/x/sys/unix"
)

// Protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Endpoint is where spans go and how, from the flags first and then the
// standard environment variables (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT,
// _PROTOCOL; _HEADERS, _INSECURE, _CERTIFICATE, _TIMEOUT and _COMPRESSION
// are read by the SDK's exporters themselves).
type Endpoint struct {
	// URL is the flag's value: "http://collector:4317", "collector:4317"
	// (gRPC with TLS unless --otlp-insecure or the environment says
	// otherwise) or, for HTTP, "https://host:4318/v1/traces".
	URL      string
	Protocol string // ProtocolGRPC or ProtocolHTTP; "" reads the environment, else gRPC
	// Insecure sends without TLS when the URL has no scheme.
	Insecure bool
}

// Configured reports whether spans are to be sent at all: a flag or the
// environment names an endpoint. Nothing is sent otherwise.
func (e Endpoint) Configured() bool {
	return e.URL != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// protocol resolves the protocol: flag, then the traces variable, then the
// general one, then gRPC.
func (e Endpoint) protocol() (string, error) {
	p := e.Protocol
	for _, env := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p == "" {
			p = os.Getenv(env)
		}
	}
	switch p {
	case "", ProtocolGRPC:
		return ProtocolGRPC, nil
	case ProtocolHTTP, "http":
		return ProtocolHTTP, nil
	case "http/json":
		return "", errors.New("OTLP protocol http/json: the OpenTelemetry Go SDK sends only grpc and http/protobuf")
	}
	return "", fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf (--otlp-protocol, OTEL_EXPORTER_OTLP_PROTOCOL)", p)
}

// newClient builds the SDK's OTLP exporter. Its own retries are off: the
// export loop retries from the journal for as long as it takes, and the
// SDK's would give up after a minute and drop the batch.
func newClient(ctx context.Context, e Endpoint) (otlptrace.Client, string, error) {
	proto, err := e.protocol()
	if err != nil {
		return nil, "", err
	}
	switch proto {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false})}
		if e.URL != "" {
			if hasScheme(e.URL) {
				if _, err := url.Parse(e.URL); err != nil {
					return nil, "", fmt.Errorf("--otlp-endpoint %q: %w", e.URL, err)
				}
				opts = append(opts, otlptracegrpc.WithEndpointURL(e.URL))
			} else {
				opts = append(opts, otlptracegrpc.WithEndpoint(e.URL))
				if e.Insecure {
					opts = append(opts, otlptracegrpc.WithInsecure())
				}
			}
		}
		return otlptracegrpc.NewClient(opts...), proto, nil
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false})}
		if e.URL != "" {
			if hasScheme(e.URL) {
				u, err := url.Parse(e.URL)
				if err != nil {
					return nil, "", fmt.Errorf("--otlp-endpoint %q: %w", e.URL, err)
				}
				// A base URL gets the signal's path, as the general
				// OTEL_EXPORTER_OTLP_ENDPOINT does; a path given is kept.
				if u.Path == "" || u.Path == "/" {
					u.Path = "/v1/traces"
				}
				opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
			} else {
				opts = append(opts, otlptracehttp.WithEndpoint(e.URL))
				if e.Insecure {
					opts = append(opts, otlptracehttp.WithInsecure())
				}
			}
		}
		return otlptracehttp.NewClient(opts...), proto, nil
	}
}

func hasScheme(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// NodeResource describes this node as the spans' resource: service.name
// (OTEL_SERVICE_NAME overrides routetrace), service.version, host.name,
// k8s.node.name when known, os.type and os.version (the kernel release),
// and OTEL_RESOURCE_ATTRIBUTES on top.
func NodeResource(version, nodeName string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "routetrace"),
		attribute.String("service.version", version),
		attribute.String("os.type", "linux"),
	}
	if h, err := os.Hostname(); err == nil {
		attrs = append(attrs, attribute.String("host.name", h))
	}
	if nodeName != "" {
		attrs = append(attrs, attribute.String("k8s.node.name", nodeName))
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		attrs = append(attrs, attribute.String("os.version", unix.ByteSliceToString(uts.Release[:])))
	}
	base := resource.NewSchemaless(attrs...)
	// The environment wins over the defaults: OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES are how a platform team names things.
	env, err := resource.New(context.Background(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("reading OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	r, err := resource.Merge(base, env)
	if err != nil {
		return nil, fmt.Errorf("merging resources: %w", err)
	}
	return r, nil
}

// backoff is the wait before the n-th retry of an export: short at first
// (a Collector restarting), at most 5 s, so that a backend back up is
// used within seconds.
func backoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n, 5)
	return min(d, 5*time.Second)
}
