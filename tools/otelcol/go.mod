// The OpenTelemetry Collector builder (ocb), pinned as a Go tool: it turns
// builder-config.yaml into the distribution's sources in dist/ (`make
// otelcol-sources`), from which `make otelcol` builds the Collector the tests
// run between routetrace and Jaeger (cmd/routetrace/collector_test.go). A
// module of its own, like tools/jaeger: the builder's and the Collector's
// dependencies stay out of the project's go.mod, and the root module's `go
// test ./...` and `go mod tidy` skip a nested module. dist/ is a module of
// its own too (the builder writes its go.mod), so that the builder's own
// dependencies do not raise the Collector's.
module github.com/routetrace/routetrace/tools/otelcol

go 1.26.8

tool go.opentelemetry.io/collector/cmd/builder

require (
	github.com/fsnotify/fsnotify v1.9.0 // indirect
	github.com/go-viper/mapstructure/v2 v2.4.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/knadh/koanf/maps v0.1.2 // indirect
	github.com/knadh/koanf/parsers/yaml v1.1.1 // indirect
	github.com/knadh/koanf/providers/env/v2 v2.0.2 // indirect
	github.com/knadh/koanf/providers/file v1.2.1 // indirect
	github.com/knadh/koanf/providers/fs v1.0.1 // indirect
	github.com/knadh/koanf/v2 v2.4.1 // indirect
	github.com/mitchellh/copystructure v1.2.0 // indirect
	github.com/mitchellh/reflectwalk v1.0.2 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	go.opentelemetry.io/collector/cmd/builder v0.165.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
