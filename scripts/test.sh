#!/usr/bin/env bash
# Runs the whole test suite against real services: provisions PostgreSQL
# (an existing server, or a private cluster) and a private Dovecot on loopback,
# then runs cargo test. Works on a fresh Debian machine as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=lib/dovecot.sh
source scripts/lib/dovecot.sh

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found: install Rust (rustup) first" >&2; exit 1; }

pg_provision
dovecot_start "$PWD/target/dovecot"
trap 'dovecot_stop "$PWD/target/dovecot" || true' EXIT

cargo test --locked --all-features -- --test-threads="${INMAIL_TEST_THREADS:-4}"
