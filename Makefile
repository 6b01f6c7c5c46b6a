# routetrace. Run as root: tracing and the tests load BPF programs and make
# network namespaces. `make help` lists the targets.

GO       ?= go
CLANG    ?= clang-19
PREFIX   ?= /usr/local
CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/routetrace
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X main.version=$(VERSION)

# Debian packages the build, the tests and vmtest need.
APT_PKGS := clang-19 llvm-19 libbpf-dev bpftool iproute2 net-tools \
            qemu-system-x86 busybox-static xz-utils git ca-certificates

.PHONY: help build install trace generate check-generate vmlinux deps test test-host vmtest bench fuzz clean

help:
	@echo "make install        build routetrace and install it to $(PREFIX)/bin (no clang needed)"
	@echo "make trace          build and run 'routetrace trace' (as root)"
	@echo "make test           every test: stale-object check, vet, host tests, vmtest on Debian kernels"
	@echo "make test-host      unit and host end-to-end tests only"
	@echo "make vmtest         the privileged tests inside VMs, every kernel in vmtest/kernels.txt, every tier"
	@echo "make bench          tracer on/off benchmark (100k routes)"
	@echo "make generate       rebuild the BPF objects from bpf/*.c (needs clang-19)"
	@echo "make deps           install the Debian packages the above need"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/routetrace ./cmd/routetrace

install: build
	install -D -m 0755 bin/routetrace $(DESTDIR)$(PREFIX)/bin/routetrace

trace: build
	./bin/routetrace trace

# Installs only what is missing, so a warm machine does not wait for apt.
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

generate:
	cd tracer && $(GO) generate ./...

# The committed objects must be what the C compiles to: regenerate and
# fail on any difference.
check-generate: generate
	@if ! git diff --quiet -- tracer/; then \
		git --no-pager diff --stat -- tracer/; \
		echo "the committed BPF objects are stale: run 'make generate' and commit tracer/*_bpfel.*"; \
		exit 1; \
	fi

# vmlinux.h is generated once from a BTF kernel and committed (CO-RE).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

test: deps check-generate test-host vmtest

test-host:
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -run '^$$' -fuzz FuzzDecode -fuzztime 10s ./rtnl
	$(GO) test -count=1 -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 10s ./tracer
	$(GO) test -count=1 -run '^$$' -fuzz FuzzBPFParser -fuzztime 10s -fuzzminimizetime 5s ./tracer

vmtest:
	mkdir -p $(CACHE)/bin
	CGO_ENABLED=0 $(GO) test -c -o $(CACHE)/bin/tracer.test ./tracer
	$(GO) run ./vmtest --test-binary $(CACHE)/bin/tracer.test \
		--tiers fentry,kprobe,tracepoint \
		--extra-file /usr/sbin/route:/usr/sbin/route \
		--summary-md $(CACHE)/vmtest-summary.md --quiet

bench: build
	./bin/routetrace bench --n 100000 --rounds 3

clean:
	rm -rf bin
