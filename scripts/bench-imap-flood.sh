#!/usr/bin/env bash
# Peak memory of an IMAP drain when the server floods one FETCH with
# FLOOD_COUNT (default 20) unsolicited responses carrying FLOOD_MB (default
# 48) MB literals each: runs the ignored measurement in
# tests/reliability_imap_memory.rs (alone in its process) and prints the
# peak RSS; fails above 150 MiB.
#
#   scripts/bench-imap-flood.sh
#   FLOOD_COUNT=5 FLOOD_MB=100 scripts/bench-imap-flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pg_provision
cargo test --quiet --test reliability_imap_memory -- --ignored --nocapture 2>&1 | grep -E "imap flood|panicked|test result"
