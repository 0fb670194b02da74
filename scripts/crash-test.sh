#!/usr/bin/env bash
# Crash test of `inmail run`: SIGKILL at random points 20 times while
# draining 5,000 correlated bounces, then checks in PostgreSQL that every
# message has exactly one set of effects (see tests/crash.rs).
#
#   scripts/crash-test.sh                    # N=5000, 20 kills, release build
#   INMAIL_CRASH_N=1000 PROFILE=dev scripts/crash-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pg_provision
profile=()
[ "${PROFILE:-release}" = release ] && profile=(--release)
cargo test "${profile[@]}" --test crash -- --nocapture
