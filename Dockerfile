# syntax=docker/dockerfile:1
#
# stopcaster: one image for every subcommand (worker, enqueue, report, migrate, stop, fake-live).
#   docker build -t stopcaster .
#   docker run --rm stopcaster --help
# The default command is `worker`; docker-compose.yml runs the other subcommands from the same
# image.

# ---- builder -------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependency layer: build every dependency against placeholder sources, so that a change to
# src/ or migrations/ rebuilds only this crate. Invalidated only by Cargo.toml or Cargo.lock.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The crate itself. sqlx::migrate! embeds migrations/ and askama the dashboard's templates
# (src/dashboard/templates, named in askama.toml) at compile time. COPY keeps the files'
# old mtimes, so touch them: cargo must see them as newer than the placeholder build.
COPY src ./src
COPY migrations ./migrations
COPY askama.toml ./
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/stopcaster /usr/local/bin/stopcaster \
    && /usr/local/bin/stopcaster --version

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim

# The binary needs only glibc and libgcc_s (both in the base image) and the CA bundle, which
# rustls reads to verify https://live.aliyuncs.com. Unpinned on purpose: the CA bundle should
# follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 stopcaster \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin stopcaster

COPY --from=builder /usr/local/bin/stopcaster /usr/local/bin/stopcaster

USER 10001:10001
# fake-live (8080) and the worker's /metrics, /healthz, /readyz (STOPCASTER_METRICS_ADDR, 9187).
EXPOSE 8080 9187
ENTRYPOINT ["stopcaster"]
CMD ["worker"]
