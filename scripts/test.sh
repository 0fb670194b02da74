#!/usr/bin/env bash
# Runs the whole test suite against real services: provisions PostgreSQL
# (an existing server, or a private cluster) and a private Dovecot on loopback,
# and the real MTAs of the truth set (unpacked, not installed), then runs
# cargo test. Works on a fresh Debian machine as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=lib/dovecot.sh
source scripts/lib/dovecot.sh
# shellcheck source=lib/mta.sh
source scripts/lib/mta.sh

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found: install Rust (rustup) first" >&2; exit 1; }

# imports point one way (the layer order is in scripts/check-layers.py)
scripts/check-layers.sh >/dev/null || { scripts/check-layers.sh; exit 1; }

pg_provision
dovecot_start "$PWD/target/dovecot"
trap 'dovecot_stop "$PWD/target/dovecot" || true' EXIT
# the real MTAs of tests/mta_truth.rs; the test skips, with one line, those
# that cannot be provisioned here
mta_provision "$PWD/target/mta" || true

log=$(mktemp)
set +e
cargo test --locked --lib --bins --tests -- --test-threads="${INMAIL_TEST_THREADS:-4}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# the real-MTA truth set's scores (tests/mta_truth.rs writes them)
if [ -s target/mta/scores.md ]; then
    echo "real-MTA truth set (tests/mta_truth.rs):"
    cat target/mta/scores.md
    rm -f target/mta/scores.md
fi
# one closing line for the whole suite, summed over every test binary
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "inmail: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$rc"
