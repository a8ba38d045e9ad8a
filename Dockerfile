# syntax=docker/dockerfile:1
#
# Strom's container image.
#
#   docker build -t ghcr.io/strom-io/strom:0.1.0 .
#   minikube image build -t ghcr.io/strom-io/strom:0.1.0 .   # straight into minikube
#
# Configuration is entirely by STROM_<KEY> env vars (Kafka's key names,
# upper-cased, dots to underscores); see docs/kubernetes.md. Where a registry
# cannot be reached, scripts/build-image.sh builds an equivalent image from a
# binary compiled on the host.

# The builder's Debian release must match the runtime's (bookworm = Debian
# 12): the binary links against that glibc.
ARG RUST_VERSION=1
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and the target dir between builds;
# the binary is copied out because the target dir is not in the image.
# --locked when a lockfile is committed, so the image gets exactly the tested
# dependency versions. The release profile keeps line tables for profiling;
# the image drops them (symbols stay, for readable backtraces): ~50 MB less.
# The data directory is made here, owned by the runtime user, because the
# runtime image has no shell to make it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    locked=""; if [ -f Cargo.lock ]; then locked="--locked"; fi; \
    cargo build --release $locked -p strom; \
    install -D -m 0755 target/release/strom /out/strom; \
    strip --strip-debug /out/strom; \
    install -d -m 0750 -o 65532 -g 65532 /out/var/lib/strom/data

# distroless/cc: glibc, libgcc, CA certificates, /etc/passwd with the
# "nonroot" user (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/strom /strom
COPY --from=builder --chown=65532:65532 /out/var/lib/strom /var/lib/strom
USER 65532:65532
# A container has no use for a loopback-only listener: listen on every
# interface, and advertise localhost for `docker run -p 9092:9092`. The
# Kubernetes manifests replace all of these.
ENV STROM_LISTENERS="PLAINTEXT://0.0.0.0:9092" \
    STROM_ADVERTISED_LISTENERS="PLAINTEXT://localhost:9092" \
    STROM_LOG_DIRS="/var/lib/strom/data" \
    STROM_ADMIN_HTTP_LISTENER="0.0.0.0:9080"
# 9092 Kafka, 9094 Kafka for clients outside Kubernetes, 9080 HTTP
# (/healthz, /readyz, /metrics).
EXPOSE 9092 9094 9080
VOLUME ["/var/lib/strom"]
# SIGTERM (docker stop, pod deletion) makes Strom stop accepting, finish
# in-flight requests, flush and exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/strom", "serve"]
