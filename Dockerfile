# routetrace in a container image: the static binary and nothing else.
#
#   make image        # buildah by default (IMAGE_BUILDER=podman or docker), tags routetrace:<version>
#   podman run --rm --user 0 --privileged --network host --pid host --cgroupns host \
#       -v /sys/fs/bpf:/sys/fs/bpf -v /sys/kernel/tracing:/sys/kernel/tracing \
#       -v /run/netns:/run/netns:rslave -v /var/lib/routetrace:/var/lib/routetrace \
#       routetrace:<version> trace
#
# That is every feature, as root: --privileged loads and attaches BPF
# programs, mounts what is missing and enters every network namespace;
# --network host traces the node's namespace, not a private one; --pid host
# because the kernel reports actors by their pid in the host's pid namespace
# and enrichment and the namespace watcher read /proc/<pid>; --cgroupns host
# so that cgroup paths are the node's. /run/netns (rslave: namespaces added
# later appear too) is where `ip netns add` and CNI plugins bind-mount
# namespaces no process holds; bpffs (enforce pins there) and tracefs are
# the host's; the journal's directory outlives the container.
#
# Non-root: the image runs as uid 65532 and the binary carries the file
# capabilities in FILE_CAPS (below). Without --privileged:
#   podman run --cap-add BPF,PERFMON,NET_ADMIN,SYS_ADMIN --network host --pid host \
#       -v /sys/fs/bpf:/sys/fs/bpf -v /run/netns:/run/netns:rslave routetrace:<version> trace
# Every run must grant all of them, --privileged or --cap-add, even
# `version`: the kernel refuses to execute a file whose capabilities carry
# the effective bit unless the bounding set holds every one ("exec
# /usr/local/bin/routetrace: operation not permitted"); that is what a
# plain `podman run routetrace:<version> version` gets. no_new_privs must be
# off (the default), and the seccomp profile must allow bpf() and
# perf_event_open(): podman 4.3's (Debian 12) allows them only with
# CAP_SYS_ADMIN, newer profiles also with CAP_BPF and CAP_PERFMON.
# --build-arg FILE_CAPS= builds one without file capabilities, which any
# container runs, and which then traces only as root (--user 0).
# Why CAP_SYS_ADMIN and not only the three BPF needs: tier 3 (the kernels
# that refuse fentry and kprobes) and the link-name listeners open their
# rtnetlink sockets with setns() into each traced namespace, routetrace's
# own included, and setns needs CAP_SYS_ADMIN: with cap_bpf,cap_perfmon,
# cap_net_admin alone `probe` works and `trace` stops at "entering netns
# ...: operation not permitted" (measured on 6.18). Build with
# --build-arg FILE_CAPS=cap_bpf,cap_perfmon,cap_net_admin+ep for the
# narrower set on kernels where fentry or kprobes attach.
# What the non-root user still cannot do (root, i.e. --user 0 --privileged,
# can):
#   - mount bpffs, tracefs or securityfs where the container lacks them
#     (bind-mount the host's instead);
#   - the syscall capture and --ioctl: tracepoint ids are read from tracefs,
#     which is root's (mode 0700);
#   - follow a namespace held only by another user's processes (no nsfs
#     mount): /proc/<pid>/ns/net needs CAP_SYS_PTRACE; the same for
#     enrichment's /proc/<pid>/exe (the command line is still read);
#   - enforce: it pins under /sys/fs/bpf/routetrace, and bpffs is usually
#     root's (systemd mounts it mode 0700).
# `routetrace probe` in the container says what this kernel allows.

# The build stage's base: the public Go image by default. Where nothing can
# be pulled, `make image-base` assembles one from a debootstrap'd Debian and
# the host's Go (localhost/routetrace-build-base:<go version>) and
# `make image-test` builds from it.
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
ARG VERSION=devel
ARG COMMIT=
# A Go module proxy other than the default, if the build machine needs one.
ARG GOPROXY
ARG FILE_CAPS=cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin+ep
# Module and build caches outlive the build (buildah 1.24+, BuildKit): a
# warm `make image` compiles only what changed.
ENV GOMODCACHE=/cache/gomod GOCACHE=/cache/gobuild GOFLAGS=-buildvcs=false CGO_ENABLED=0
WORKDIR /src
COPY . .
# As `make release`: static, -trimpath, no symbol table or DWARF.
RUN --mount=type=cache,target=/cache/gomod --mount=type=cache,target=/cache/gobuild \
    go build -trimpath -ldflags "-X main.version=${VERSION} -X main.buildCommit=${COMMIT} -s -w" \
        -o /out/routetrace ./cmd/routetrace
# setcap is libcap2-bin's: the public Go image lacks it, the local base has it.
RUN command -v setcap >/dev/null || { apt-get update -q && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libcap2-bin; }
# The final image's whole tree, copied in one layer: the binary with its
# capabilities (a security.capability xattr, which COPY keeps; a chown
# would drop it), the CA bundle (--otlp-endpoint speaks TLS unless
# --otlp-insecure), /tmp (bench's scratch files) and the journal's default
# --state-dir, owned by the non-root user (a volume over it should be too).
RUN mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/var/lib/routetrace && \
    chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/var/lib/routetrace && \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ && \
    cp /out/routetrace /rootfs/usr/local/bin/routetrace && \
    if [ -n "${FILE_CAPS}" ]; then setcap "${FILE_CAPS}" /rootfs/usr/local/bin/routetrace; fi && \
    getcap /rootfs/usr/local/bin/routetrace

FROM scratch
ARG VERSION=devel
ARG COMMIT=
LABEL org.opencontainers.image.title="routetrace" \
      org.opencontainers.image.description="eBPF tracer of routing changes (routes, rules, nexthops) with the process that made them" \
      org.opencontainers.image.source="https://github.com/routetrace/routetrace" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/routetrace"]
CMD ["trace"]
