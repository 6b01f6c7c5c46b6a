package tracer

// The BPF objects, compiled by bpf2go. The outputs are committed so that
// `go build` needs no clang; `make generate` rebuilds them and CI fails if
// they differ from the C.

//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type rt_event -type rt_proc fib ../bpf/fib.bpf.c -- -I../bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type rt_event -type rt_proc nlcapture ../bpf/nlcapture.bpf.c -- -I../bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type rt_event -type rt_proc nlorigin ../bpf/nlorigin.bpf.c -- -I../bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type rt_event -type rt_proc parsertest ../bpf/parsertest.bpf.c -- -I../bpf/include
