#!/usr/bin/env bash
# Load benchmark of `inmail run --once`: N (default 100,000) DSNs tied to
# registered deliveries in a maildir, drained end to end (read, store in
# intake, move to cur/, analyse, qualify, apply, mark done) by the release
# binary; msgs/s and peak RSS (/usr/bin/time -v) for each worker count.
#
#   scripts/bench-daemon.sh                  # N=100000, WORKERS="1 2 4", BATCH=500
#   N=20000 WORKERS="1 2" scripts/bench-daemon.sh
#   BINS="old/inmail target/release/inmail" scripts/bench-daemon.sh
#                                            # two builds, alternated per worker count
# Logs (one JSON line per recipient, level info) go to a file, as in production.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

N=${N:-100000}
WORKERS=${WORKERS:-"1 2 4"}
BATCH=${BATCH:-500}
LEVEL=${LEVEL:-info}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

pg_provision
base=${DATABASE_URL%/*}
bench_url="$base/inmail_bench_daemon"

cargo build --release --quiet --bin inmail --example gen_bounces
BINS=${BINS:-$TARGET_DIR/release/inmail}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$TARGET_DIR/release/examples/gen_bounces" "$work/corpus" "$N" 2>/dev/null

rules=config/rules.toml
[ -f "$rules" ] || rules=tests/fixtures/rules.toml
results=()
for w in $WORKERS; do
for inmail in $BINS; do
    _pg_psql "$base/postgres" -qc 'drop database if exists inmail_bench_daemon with (force)' \
        -c 'create database inmail_bench_daemon' >/dev/null
    export INMAIL__DATABASE__URL="$bench_url"
    "$inmail" migrate >/dev/null
    "$inmail" rules import "$rules" >/dev/null
    "$inmail" deliveries import "$work/corpus/deliveries.csv" >/dev/null
    _pg_psql "$bench_url" -qc 'vacuum analyze' >/dev/null
    rm -rf "$work/run" && mkdir -p "$work/run"
    cp -al "$work/corpus/maildir" "$work/run/maildir" # hard links: the corpus stays intact
    cat >"$work/run/inmail.toml" <<TOML
[database]
max_connections = $((w + 4))
[daemon]
workers = $w
batch_size = $BATCH
queue_capacity = $((BATCH * 4))
[log]
level = "$LEVEL"
[[mailbox]]
name = "bench"
kind = "maildir"
path = "$work/run/maildir"
TOML
    sync
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$work/run/time.txt" \
        "$inmail" run --once --config "$work/run/inmail.toml" >"$work/run/summary.json" 2>"$work/run/log.jsonl"
    end=$(date +%s.%N)
    rss_kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/run/time.txt")
    secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
    rate=$(awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')
    done_rows=$(_pg_psql "$bench_url" -Atqc "select count(*) from intake where status = 'done'")
    events=$(_pg_psql "$bench_url" -Atqc "select count(*) from bounce_events where delivery_log_id is not null")
    left=$(find "$work/run/maildir/new" -type f | wc -l)
    line="$inmail workers=$w batch=$BATCH: $N messages in ${secs}s = $rate msgs/s, peak RSS $((rss_kb / 1024)) MiB ($done_rows done, $events correlated events, $left left in new/, $(wc -l <"$work/run/log.jsonl") log lines)"
    echo "$line"
    results+=("$line")
done
done
echo
printf '%s\n' "${results[@]}"
