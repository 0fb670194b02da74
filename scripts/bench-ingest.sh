#!/usr/bin/env bash
# Benchmark of `inmail ingest` into a local PostgreSQL: N (default 20,000)
# correlated DSNs, plus the store-level benchmark (apply_batch on N
# constructed inputs) which does not depend on the parser.
#
#   scripts/bench-ingest.sh            # N=20000 BATCH=500
#   N=5000 BATCH=1000 scripts/bench-ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

N=${N:-20000}
BATCH=${BATCH:-500}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

pg_provision
base=${DATABASE_URL%/*}
bench_url="$base/inmail_bench"
_pg_psql "$base/postgres" -qc 'drop database if exists inmail_bench' -c 'create database inmail_bench' >/dev/null
export INMAIL__DATABASE__URL="$bench_url"

cargo build --release --quiet --bin inmail --example gen_bounces
inmail="$TARGET_DIR/release/inmail"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$TARGET_DIR/release/examples/gen_bounces" "$work" "$N"

rules=config/rules.toml
[ -f "$rules" ] || rules=tests/fixtures/rules.toml
"$inmail" migrate
"$inmail" rules import "$rules"
"$inmail" deliveries import "$work/deliveries.csv"

start=$(date +%s.%N)
"$inmail" ingest --batch "$BATCH" "$work/maildir" >"$work/out.txt"
end=$(date +%s.%N)
lines=$(wc -l <"$work/out.txt")
correlated=$(grep -c 'correlated=tracking_id' "$work/out.txt" || true)
rate=$(awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')
echo "ingest: $N messages, $lines result lines, $correlated correlated, $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')s = $rate messages/s"
if [ "$correlated" -lt "$N" ]; then
    echo "note: only $correlated of $N recipients correlated: the analysis engine does not parse these DSNs (yet)" >&2
fi

# The store alone, with inputs built in Rust (one fresh database per run).
DATABASE_URL="$base/postgres" INMAIL_BENCH_BATCH="$BATCH" \
    cargo test --release --quiet --test store -- --ignored bench_apply_20000 --nocapture 2>&1 | grep -E 'BENCH|FAILED|panicked'
