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

# Dependency layer: build every dependency against placeholder sources of the workspace's
# crates, so that a change to src/, crates/*/src or migrations/ rebuilds only our crates.
# Invalidated only by a Cargo.toml or Cargo.lock.
COPY Cargo.toml Cargo.lock ./
COPY crates/live/Cargo.toml crates/live/
COPY crates/fake-live/Cargo.toml crates/fake-live/
COPY crates/stopcaster/Cargo.toml crates/stopcaster/
RUN for crate in live fake-live stopcaster; do \
        mkdir -p "crates/$crate/src" && touch "crates/$crate/src/lib.rs"; \
    done \
    && mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --release --locked --bin stopcaster \
    && rm -rf src crates/*/src

# Our crates. sqlx::migrate! embeds migrations/ and askama the dashboard's templates
# (crates/stopcaster/src/dashboard/templates, named in crates/stopcaster/askama.toml) at compile
# time; the store's sqlx::query! macros read .sqlx/ (SQLX_OFFLINE, .cargo/config.toml), so the
# build needs no database. COPY keeps the files' old mtimes, so touch them: cargo must see them
# as newer than the placeholder build.
COPY src ./src
COPY crates ./crates
COPY migrations ./migrations
COPY .sqlx ./.sqlx
COPY .cargo/config.toml ./.cargo/config.toml
RUN touch src/main.rs crates/*/src/lib.rs \
    && cargo build --release --locked --bin stopcaster \
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
