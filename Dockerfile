# syntax=docker/dockerfile:1
#
# inmail: multi-stage build, small non-root runtime image.
#   docker build -t inmail .
#   docker run --rm -e INMAIL__DATABASE__URL=postgres://inmail:secret@db/inmail \
#       -v /srv/bounces:/var/mail/bounces -v ./inmail.toml:/etc/inmail/inmail.toml:ro inmail
# Settings come from /etc/inmail/inmail.toml (mount your own) and INMAIL__… variables;
# credentials by environment (password_env) or a mounted secret (password_file).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when the manifests change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/qualify.rs \
 && cargo build --release --locked --bin inmail \
 && rm -rf src benches target/release/deps/inmail-* target/release/deps/libinmail-* target/release/.fingerprint/inmail-*

COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked --bin inmail \
 && strip target/release/inmail

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 inmail \
 && useradd --system --uid 10001 --gid inmail --home-dir /var/lib/inmail --shell /usr/sbin/nologin inmail \
 && mkdir -p /etc/inmail /var/lib/inmail /var/mail/bounces \
 && chown inmail:inmail /var/lib/inmail /var/mail/bounces

COPY --from=build /src/target/release/inmail /usr/local/bin/inmail
COPY config/inmail.toml /etc/inmail/inmail.toml
COPY config/rules.toml /etc/inmail/rules.toml

USER inmail:inmail
WORKDIR /var/lib/inmail
ENV INMAIL_CONFIG=/etc/inmail/inmail.toml \
    INMAIL__LOG__FORMAT=json

# Healthy = the database answers and this daemon's heartbeat is fresh.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/inmail", "health"]

# tini forwards SIGTERM to inmail, which finishes the messages in hand and exits 0.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/inmail"]
CMD ["run"]
STOPSIGNAL SIGTERM
