# routetrace. Run as root: tracing and the tests load BPF programs and make
# network namespaces. `make help` lists the targets.

GO       ?= go
CLANG    ?= clang-19
PREFIX   ?= /usr/local
CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/routetrace
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -modified)
LDFLAGS  := -X main.version=$(VERSION) -X main.buildCommit=$(COMMIT)

# Every Go build here without cgo: routetrace has no C, the guests' binaries
# must be static anyway, and Go's build cache keys on the setting, so with
# cgo on where a C compiler is installed, the host's tests and vet would
# compile every package that imports net (nearly all: gRPC, OTel, client-go)
# a second time. On a fresh machine that is minutes of CPU.
CGO_ENABLED ?= 0
export CGO_ENABLED

# Debian packages the build, the tests and vmtest need.
APT_PKGS := clang-19 llvm-19 libbpf-dev bpftool iproute2 net-tools \
            qemu-system-x86 qemu-system-arm busybox-static xz-utils git ca-certificates \
            debootstrap e2fsprogs containerd runc containernetworking-plugins \
            buildah podman

.PHONY: help build install release trace generate check-generate vmlinux deps jaeger otelcol otelcol-sources check-otelcol test test-host test-host-in-slot test-vet-fuzz test-go vmtest vmtest-binaries vmbench vmtest-enforce vmtest-enforce-binaries vm incident incident-binaries kernel-table bench clean

help:
	@echo "make install        build routetrace and install it to $(PREFIX)/bin (no clang needed)"
	@echo "make release        static binaries for amd64 and arm64 with SHA256SUMS, into dist/"
	@echo "make trace          build and run 'routetrace trace' (as root)"
	@echo "make test           every test: stale-object check, then host tests (vet, Go tests, fuzzing) beside vmtest, the enforcer and the networkd incident"
	@echo "make test-host      the host's tests only: make test-vet-fuzz, then make test-go (make test also runs make image-test)"
	@echo "make test-vet-fuzz  go vet and the fuzz runs"
	@echo "make test-go        every Go test on the host, then the tracer's and the CLI's with tier 3's syscall capture"
	@echo "make vmtest         the privileged tests inside VMs, every kernel in vmtest/kernels.txt, every tier"
	@echo "make vmtest-enforce the BPF LSM enforcer's tests inside VMs, once per kernel"
	@echo "make vm             vmtest, vmtest-enforce and incident side by side, sharing the cores"
	@echo "make incident       the systemd-networkd incident in a Debian VM with systemd, every kernel, every tier"
	@echo "make bench          tracer on/off benchmark (100k routes)"
	@echo "make kernel-table   write the README's kernel table from the last make test's results"
	@echo "make vmbench        tiers 1-2 cost in each VM kernel: BPF time per program run vs the kernel's time per change"
	@echo "make generate       rebuild the BPF objects from bpf/*.c (needs clang-19)"
	@echo "make jaeger         build the Jaeger the OTLP export tests run, into $(CACHE)/bin (once)"
	@echo "make otelcol        build the OpenTelemetry Collector the Collector test runs (tools/otelcol), into $(CACHE)/bin (once)"
	@echo "make deps           install the Debian packages the above need"
	@echo "make image          build the container image routetrace:<version> (buildah; IMAGE_BUILDER, GO_IMAGE to change)"
	@echo "make image-base     assemble the image's build-stage base from debootstrap and the host's Go, no pulls"
	@echo "make image-test     build the image from image-base, then run probe, version and trace in it"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/routetrace ./cmd/routetrace

install: build
	install -D -m 0755 bin/routetrace $(DESTDIR)$(PREFIX)/bin/routetrace

trace: build
	./bin/routetrace trace

# Static binaries for every release architecture, named with the version,
# and their SHA-256 sums: dist/routetrace-<version>-linux-<arch>,
# dist/SHA256SUMS (check with `cd dist && sha256sum -c SHA256SUMS`).
# -trimpath: no build machine paths in the binary; -s -w: no symbol table
# or DWARF (amd64: 79 MB -> 59).
DIST           ?= dist
RELEASE_ARCHES ?= amd64 arm64
release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	for a in $(RELEASE_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" \
			-o $(DIST)/routetrace-$(VERSION)-linux-$$a ./cmd/routetrace || exit 1; \
	done
	cd $(DIST) && sha256sum routetrace-* > SHA256SUMS
	@echo "$(DIST):"; ls -l $(DIST)

# Installs only what is missing, so a warm machine does not wait for apt.
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

generate:
	$(GO) generate ./tracer ./enforce

# The committed objects must be what the C compiles to: regenerate and
# fail on any difference.
check-generate: generate
	@if ! git diff --quiet -- tracer/ enforce/; then \
		git --no-pager diff --stat -- tracer/ enforce/; \
		echo "the committed BPF objects are stale: run 'make generate' and commit tracer/*_bpfel.* enforce/*_bpfel.*"; \
		exit 1; \
	fi

# vmlinux.h is generated once from a BTF kernel and committed (CO-RE).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

# Jaeger v2 (an OpenTelemetry Collector distribution) for the OTLP export
# tests (internal/jaegertest). It is built from tools/jaeger, a module of its
# own: its dependencies do not build beside the project's otel version. The
# version is in the name (keep it equal to tools/jaeger/go.mod's and to
# jaegertest.Version) and the binary lives in the cache, outside the tree: a
# cold build takes ~7 minutes and 2 GB on 2 cores, so it is built only when
# missing. -p 1: other builds share the machine. Built to a temporary name
# first, so that an interrupted build leaves no binary that looks done.
JAEGER_VERSION := v1.76.0
JAEGER := $(CACHE)/bin/jaeger-$(JAEGER_VERSION)

jaeger: $(JAEGER)

$(JAEGER):
	mkdir -p $(dir $@)
	cd tools/jaeger && $(GO) build -p 1 -o $@.tmp github.com/jaegertracing/jaeger/cmd/jaeger
	mv $@.tmp $@

# The OpenTelemetry Collector that runs deploy/otel-collector/config.yaml
# between routetrace and Jaeger in the tests (cmd/routetrace/collector_test.go),
# with only that config's components: its sources are generated by the
# Collector builder from tools/otelcol/builder-config.yaml and committed in
# tools/otelcol/dist, so the build is a plain `go build` pinned by dist/go.sum
# (why: builder-config.yaml's header). Built like Jaeger: the version in the
# name (keep it equal to builder-config.yaml's and to
# otelcoltest.Version), into the cache, only when missing (cold: 3 CPU
# minutes, 6 of wall time beside other builds on 2 cores; 38 MB), -p 1,
# through a temporary name; -trimpath, -s -w and no cgo, as the builder
# itself would build it.
OTELCOL_VERSION := v0.165.0
OTELCOL := $(CACHE)/bin/otelcol-routetrace-$(OTELCOL_VERSION)

otelcol: $(OTELCOL)

$(OTELCOL):
	mkdir -p $(dir $@)
	cd tools/otelcol/dist && CGO_ENABLED=0 $(GO) build -p 1 -trimpath -ldflags "-s -w" -o $@.tmp .
	mv $@.tmp $@

# After editing builder-config.yaml: regenerate dist/ (the builder's own
# `go mod tidy` included), commit it, and bump OTELCOL_VERSION or delete the
# cached binary, which is rebuilt only when missing.
otelcol-sources:
	cd tools/otelcol && $(GO) tool go.opentelemetry.io/collector/cmd/builder --config builder-config.yaml --skip-compilation

# The committed dist/ must be what the builder makes of builder-config.yaml.
check-otelcol: otelcol-sources
	@if [ -n "$$(git status --porcelain -- tools/otelcol/dist)" ]; then \
		git status --short -- tools/otelcol/dist; \
		echo "tools/otelcol/dist is stale: run 'make otelcol-sources' and commit it"; \
		exit 1; \
	fi

# The host's tests and the VM runs side by side. What keeps a core busy on
# the host (vet, the Jaeger and Collector builds, fuzzing, the image build)
# holds one guest slot (vmtest/slots.go), so on 2 cores one guest boots
# beside it and the cores are not oversubscribed. The Go tests come last
# and hold none: they mostly wait on the kernel (measured: the tracer's and
# the CLI's used 40 % of a core), so both guests run beside them.
test: deps check-generate
	$(MAKE) -j2 test-host-in-slot vm

GUEST_SLOTS := $(CACHE)/vmtest/slots
# The last slot (slot-<cores-1>): on one core, the guests wait for it.
# Niced: at the start, before any guest boots, the guests' binaries are
# what the run waits for (on a fresh machine the Jaeger build would take a
# core from them for 15 minutes); later it keeps the fuzzers' two workers
# from slowing the guest beside them.
test-host-in-slot:
	mkdir -p $(GUEST_SLOTS)
	flock $(GUEST_SLOTS)/slot-$$(($$(nproc) - 1)).lock nice -n 10 $(MAKE) test-vet-fuzz image-test
	$(MAKE) test-go

# The three VM runs side by side: each boots its kernels as soon as one of
# the machine's guest slots (one per core, shared by every vmtest process)
# is free, so no core idles while another run still has kernels to boot.
# The guests' binaries are built first, one run's after another: built
# side by side from a cold cache, the packages they share (routetrace's,
# client-go's) compiled two and three times at once.
vm:
	$(MAKE) -j1 vmtest-binaries vmtest-enforce-binaries incident-binaries
	$(MAKE) -j3 vmtest vmtest-enforce incident GUEST_BINARIES_BUILT=1

# Every host test: vet and fuzzing, then the Go tests.
test-host:
	$(MAKE) test-vet-fuzz
	$(MAKE) test-go

# Fuzz runs are bounded by count, not time: with -fuzztime 10s the fuzzer
# can fail with "context deadline exceeded" when time runs out mid-input.
# The counts keep them to about 3 minutes on 2 cores with a cold corpus
# (the enforcer's matcher and the policy parser run about 700 and 1,400
# inputs a second); the corpus in Go's cache grows with every run.
test-vet-fuzz: jaeger otelcol
	$(GO) vet ./...
	$(GO) test -count=1 -run '^$$' -fuzz FuzzDecode -fuzztime 300000x ./rtnl
	$(GO) test -count=1 -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 300000x ./tracer
	$(GO) test -count=1 -run '^$$' -fuzz FuzzBPFParser -fuzztime 100000x -fuzzminimizetime 100x ./tracer
	$(GO) test -count=1 -run '^$$' -fuzz FuzzEnforceMatcher -fuzztime 40000x -fuzzminimizetime 100x ./enforce
	$(GO) test -count=1 -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 200000x ./journal
	$(GO) test -count=1 -run '^$$' -fuzz FuzzDecodeEvent -fuzztime 300000x ./event
	$(GO) test -count=1 -run '^$$' -fuzz FuzzParse -fuzztime 40000x ./policy
	$(GO) test -count=1 -run '^$$' -fuzz FuzzConfig -fuzztime 10000x ./networkd

# The Jaeger tests run the binary built above and fail, not skip, without it.
test-go: export ROUTETRACE_JAEGER := $(JAEGER)
test-go: export ROUTETRACE_REQUIRE_JAEGER := 1
# So do the Collector tests, with the Collector built above.
test-go: export ROUTETRACE_OTELCOL := $(OTELCOL)
test-go: export ROUTETRACE_REQUIRE_OTELCOL := 1
test-go: jaeger otelcol
	# One package at a time: every tracer sees every namespace's requests,
	# so one package's floods (the bench, the loss test) would overflow
	# another's ring buffer and make its exact checks fail.
	$(GO) test -p 1 -count=1 ./...
	# Tier 3's fallback, the syscall capture, for kernels that refuse the
	# socket capture's BTF tracepoints: the tracer's and the CLI's tests again.
	ROUTETRACE_CAPTURE=syscalls $(GO) test -p 1 -count=1 ./tracer ./cmd/routetrace

# Guest binaries per architecture, in $(CACHE)/bin/<arch>/: vmtest replaces
# {arch} in their paths with each kernel's, so one run boots amd64 and arm64
# kernels. GUEST_ARCHES lists the architectures to build for.
GUEST_ARCHES ?= amd64 arm64

# The tracer's tests, the CLI's against a static routetrace binary (the
# guest has no Go toolchain) and repair's, once per tier in every kernel.
# The guests bring their own route and ifconfig (vmtest's userland).
vmtest-binaries:
	for a in $(GUEST_ARCHES); do \
		mkdir -p $(CACHE)/bin/$$a && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) test -c -o $(CACHE)/bin/$$a/tracer.test ./tracer && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) test -c -o $(CACHE)/bin/$$a/routetrace.test ./cmd/routetrace && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) test -c -o $(CACHE)/bin/$$a/repair.test ./repair && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) build -ldflags "$(LDFLAGS)" -o $(CACHE)/bin/$$a/routetrace ./cmd/routetrace || exit 1; \
	done

# GUEST_BINARIES_BUILT=1 (make vm): the binaries are built already.
vmtest: $(if $(GUEST_BINARIES_BUILT),,vmtest-binaries)
	$(GO) run ./vmtest --test-binary '$(CACHE)/bin/{arch}/tracer.test' --test-binary '$(CACHE)/bin/{arch}/routetrace.test' \
		--test-binary '$(CACHE)/bin/{arch}/repair.test' \
		--tiers fentry,kprobe,tracepoint \
		--extra-file '$(CACHE)/bin/{arch}/routetrace:/usr/local/bin/routetrace' \
		--env ROUTETRACE_BINARY=/usr/local/bin/routetrace \
		--parallel 8 --timeout 40m --summary-md $(CACHE)/vmtest-summary.md --summary-json $(CACHE)/vmtest-summary.json --quiet

# The BPF LSM enforcer: once per kernel (it does not depend on the
# tracer's attach tier), its benchmark included (enforce-cost: ...).
# ioctl32: a 32-bit route ioctl, for the compat path (i386 on amd64,
# 32-bit ARM on arm64).
vmtest-enforce-binaries:
	for a in $(GUEST_ARCHES); do \
		case $$a in amd64) c=GOARCH=386;; arm64) c="GOARCH=arm GOARM=7";; esac; \
		mkdir -p $(CACHE)/bin/$$a && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) test -c -o $(CACHE)/bin/$$a/enforce.test ./enforce && \
		env CGO_ENABLED=0 $$c $(GO) build -o $(CACHE)/bin/$$a/ioctl32 ./enforce/testdata/ioctl32 || exit 1; \
	done

vmtest-enforce: $(if $(GUEST_BINARIES_BUILT),,vmtest-enforce-binaries)
	$(GO) run ./vmtest --test-binary '$(CACHE)/bin/{arch}/enforce.test' --tiers auto --expect-tiers none \
		--extra-file '$(CACHE)/bin/{arch}/ioctl32:/usr/local/bin/ioctl32' \
		--env ROUTETRACE_IOCTL32=/usr/local/bin/ioctl32 --test-args "-test.v" \
		--parallel 8 --timeout 40m --summary-md $(CACHE)/vmtest-enforce-summary.md --summary-json $(CACHE)/vmtest-enforce-summary.json

# Tiers 1-2 cost (not part of make test: minutes per kernel under TCG):
# routetrace bench per kernel and tier, the kernels one after another.
# VMBENCH_ICOUNT=0 makes guest time count instructions (1 ns each), so the
# host's load cannot skew the timings (-1: guest time follows the host's
# clock). Under -icount the vCPUs take turns on one host thread, so a second
# vCPU (VMBENCH_CPUS=2, which adds bench --pin) separates the tracer from
# the workload only in CPU, not in guest time; and 6.1 with two vCPUs hangs
# in early boot under -icount. Hence one vCPU by default.
VMBENCH_ARGS ?= --n 10000 --rounds 3
VMBENCH_ICOUNT ?= 0
VMBENCH_CPUS ?= 1
vmbench:
	mkdir -p $(CACHE)/bin/vmbench
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(CACHE)/bin/vmbench/routetrace ./cmd/routetrace
	$(GO) run ./vmtest --bench --routetrace $(CACHE)/bin/vmbench/routetrace --bench-args "$(VMBENCH_ARGS)" \
		--tiers fentry,kprobe --cpus $(VMBENCH_CPUS) --icount $(VMBENCH_ICOUNT) --parallel 1 --timeout 40m \
		--summary-md $(CACHE)/vmbench-summary.md --quiet

# reload-noforeign is left out of the default run: like reload it removes
# nothing, and each variant costs a networkd restart under TCG. The enforce
# variants (issue 9) are the same restart judged by a policy: audit and
# repair; enforce-block is left out because networkd v252 marks its link
# failed when its removals are refused (README, Incident scenario).
# service is routetrace run by deploy/systemd/routetrace.service (issue 11).
INCIDENT_SCENARIOS ?= restart,reload,reconfigure,restart-noforeign,reconfigure-noforeign,enforce-audit,enforce-repair,service
# restart, the incident itself, runs on every kernel and tier; the variants
# test routetrace and networkd rather than the kernel's hooks, so they run
# on one kernel, under one tier (tracepoint; the guest's --every-tier).
INCIDENT_VARIANTS_KERNEL ?= 6.12

# The systemd-networkd incident (issue 3): a debootstrap'd bookworm booted
# with systemd under each kernel; every tier and variant in one boot per
# kernel, the kernels in parallel. Needs debootstrap and e2fsprogs.
# Its own bin directory, so it can run beside make vmtest.
incident-binaries:
	for a in $(GUEST_ARCHES); do \
		mkdir -p $(CACHE)/bin/incident/$$a && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) build -ldflags "$(LDFLAGS)" -o $(CACHE)/bin/incident/$$a/routetrace ./cmd/routetrace && \
		CGO_ENABLED=0 GOARCH=$$a $(GO) build -o $(CACHE)/bin/incident/$$a/routetrace-incident ./vmtest/incident || exit 1; \
	done

incident: $(if $(GUEST_BINARIES_BUILT),,incident-binaries)
	$(GO) run ./vmtest --scenario networkd \
		--routetrace '$(CACHE)/bin/incident/{arch}/routetrace' --incident-binary '$(CACHE)/bin/incident/{arch}/routetrace-incident' \
		--tiers fentry,kprobe,tracepoint --parallel 8 --timeout 40m \
		--scenarios $(INCIDENT_SCENARIOS) --variants-kernel $(INCIDENT_VARIANTS_KERNEL) \
		--summary-md $(CACHE)/incident-summary.md --summary-json $(CACHE)/incident-summary.json --quiet

# The README's kernel table, from the last make test's three runs (vmtest,
# the enforcer, the incident): which tiers passed on which kernel, which
# tier each hook got and why a better one was refused. Also the guests'
# durations in that run, the order a fresh cache starts from
# (vmtest/durations.json, see vmtest/slots.go).
kernel-table:
	$(GO) run ./vmtest table --readme README.md $(CACHE)/vmtest-summary.json \
		$(CACHE)/vmtest-enforce-summary.json $(CACHE)/incident-summary.json
	cp $(GUEST_SLOTS)/durations.json vmtest/durations.json

bench: build
	./bin/routetrace bench --n 100000 --rounds 3

clean:
	rm -rf bin

# The container image (Dockerfile). buildah by default, as root, with the
# vfs store and chroot isolation: they need neither overlay mounts nor an
# OCI runtime, so they work in a container or VM sandbox too (overlay,
# where it works: IMAGE_STORAGE="--storage-driver overlay", the same for
# every command, as buildah and podman share the store). For Docker:
# IMAGE_BUILDER=docker IMAGE_STORAGE= IMAGE_BUILD_FLAGS=.
# GO_IMAGE is the build stage's base: the public Go image, or, where no
# registry can be reached, the local one image-base assembles.
IMAGE             ?= routetrace:$(VERSION)
IMAGE_BUILDER     ?= buildah
IMAGE_STORAGE     ?= --storage-driver vfs
IMAGE_BUILD_FLAGS ?= --isolation chroot --network host --layers=false
GO_IMAGE_PUBLIC   := docker.io/library/golang:1.26-bookworm
GO_IMAGE          ?= $(GO_IMAGE_PUBLIC)
# The local base's tag names its Go and its Debian; bump the last number
# when .ci/image-base changes what goes in.
IMAGE_BASE         = localhost/routetrace-build-base:$(shell $(GO) env GOVERSION)-bookworm-1
# runc, not Debian 12's crun: crun refuses hosts with cgroups in hybrid mode
# ("cgroups in hybrid mode not supported").
IMAGE_RUNTIME     ?= podman $(IMAGE_STORAGE) --runtime runc

.PHONY: image image-base image-test

# A rebuild removes the image the tag named before, now untagged (60 MB a
# build): rmi refuses it while another tag or a container still uses it.
image:
	@set -e; pull_hint="make image: cannot pull $(GO_IMAGE). Build from a Go 1.26 image you have: make image GO_IMAGE=<image>, or from one assembled here without pulling: make image-base && make image GO_IMAGE=$(IMAGE_BASE)"; \
	if [ "$(GO_IMAGE)" = "$(GO_IMAGE_PUBLIC)" ] && [ "$(notdir $(firstword $(IMAGE_BUILDER)))" = buildah ]; then \
		$(IMAGE_BUILDER) $(IMAGE_STORAGE) pull --quiet --retry 1 $(GO_IMAGE) >/dev/null || { echo "$$pull_hint" >&2; exit 1; }; \
	fi; \
	goproxy=$$($(GO) env GOPROXY 2>/dev/null || true); \
	old=$$($(IMAGE_BUILDER) $(IMAGE_STORAGE) images -q --no-trunc $(IMAGE) 2>/dev/null || true); \
	set -x; $(IMAGE_BUILDER) $(IMAGE_STORAGE) build $(IMAGE_BUILD_FLAGS) \
		--build-arg GO_IMAGE=$(GO_IMAGE) --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
		--build-arg GOPROXY=$$goproxy -t $(IMAGE) . || { \
		set +x; [ "$(GO_IMAGE)" != "$(GO_IMAGE_PUBLIC)" ] || echo "if it failed pulling: $$pull_hint" >&2; exit 1; }; \
	set +x; \
	if [ -n "$$old" ] && [ "$$old" != "$$($(IMAGE_BUILDER) $(IMAGE_STORAGE) images -q --no-trunc $(IMAGE))" ]; then \
		$(IMAGE_BUILDER) $(IMAGE_STORAGE) rmi $$old >/dev/null 2>&1 || true; \
	fi

# Cached: the debootstrap tree in $(CACHE)/image, the image in the store,
# each built only when missing (a new Go makes a new tag).
image-base:
	BUILDAH="buildah $(IMAGE_STORAGE)" CACHE=$(CACHE) GOROOT=$$($(GO) env GOROOT) .ci/image-base $(IMAGE_BASE)

# The image built from the local base, then internal/imagetest runs it:
# metadata, version, probe (root and non-root) and a trace that must
# report a route added and deleted in a test namespace.
image-test: deps image-base
	$(MAKE) image GO_IMAGE=$(IMAGE_BASE)
	ROUTETRACE_IMAGE=$(IMAGE) ROUTETRACE_IMAGE_RUNTIME="$(IMAGE_RUNTIME)" \
		ROUTETRACE_IMAGE_VERSION=$(VERSION) ROUTETRACE_IMAGE_COMMIT=$(COMMIT) \
		$(GO) test -count=1 -v ./internal/imagetest
