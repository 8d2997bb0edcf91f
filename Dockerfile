# syntax=docker/dockerfile:1
#
# The weft image: one binary, `weft`, that runs any part of the mesh as
# `weft serve user|order|notification|analytics|gateway [flags]` (see
# docker-compose.yml and deploy/k8s). Build: `docker build -t weft:dev .`

ARG RUST_VERSION=1.95
# Build and run on the same Debian release, so the binary finds the glibc it was
# linked against.
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# rdkafka-sys compiles librdkafka (with OpenSSL, for SASL_SSL) and libsqlite3-sys
# compiles SQLite from source; the rust image already has make, a C/C++ compiler and
# the zlib and OpenSSL headers. Protos are
# compiled by protox (pure Rust), so no protoc is needed.
COPY . .
# Registry, git and target caches survive between builds (BuildKit); the binary is
# copied out of the cache mount so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p weft --bin weft \
 && install -m 0755 target/release/weft /usr/local/bin/weft

FROM debian:${DEBIAN_RELEASE}-slim
# curl is for container health checks (`curl -fsS http://127.0.0.1:<admin>/readyz`);
# ca-certificates for SMTP/webhook/Kafka TLS to hosts with private CAs; libssl3t64 for
# librdkafka's TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3t64 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/weft \
      --no-create-home --shell /usr/sbin/nologin weft \
 && install -d -o weft -g weft -m 0750 /var/lib/weft
COPY --from=build /usr/local/bin/weft /usr/local/bin/weft

# Databases (SQLite when no DATABASE_URL), the user service's signing key, and the
# notification service's .eml/SMS files live here: mount a volume on it.
ENV WEFT_DATA_DIR=/var/lib/weft \
    WEFT_LOG_FORMAT=json
WORKDIR /var/lib/weft
USER 10001:10001

# gateway HTTP, gRPC of user/order/notification/analytics, admin (/metrics,
# /healthz, /readyz) of gateway/user/order/notification/analytics.
EXPOSE 8080 5051 5052 5053 5054 9100 9101 9102 9103 9104

# The services drain on SIGTERM (health NOT_SERVING, stop accepting, finish
# in-flight work within --shutdown-grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["weft"]
CMD ["--help"]
