#!/usr/bin/env bash
# Memory benchmark of `inmail run --once` over a maildir of big bounces
# beside ordinary ones: ORDINARY (default 10,000) correlated DSNs plus BIG
# (default 200) DSNs that carry a BIG_MB (default 10) MB attachment, as
# bounces returning the whole original do. Prints the time, the peak RSS
# (/usr/bin/time -v) and how many were processed; fails unless every
# message is done and the peak RSS is at most MAX_RSS_MIB (default 150).
#
#   scripts/bench-bigmail.sh                          # release build
#   PROFILE=dev scripts/bench-bigmail.sh              # debug build (no LTO)
#   ORDINARY=2000 BIG=50 WORKERS=2 scripts/bench-bigmail.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

ORDINARY=${ORDINARY:-10000}
BIG=${BIG:-200}
BIG_MB=${BIG_MB:-10}
WORKERS=${WORKERS:-2}
MAX_RSS_MIB=${MAX_RSS_MIB:-150}
PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

pg_provision
base=${DATABASE_URL%/*}
bench_url="$base/inmail_bench_bigmail"

if [ "$PROFILE" = release ]; then
    cargo build --release --quiet --bin inmail --example gen_bounces
    bin_dir="$TARGET_DIR/release"
else
    cargo build --quiet --bin inmail --example gen_bounces
    bin_dir="$TARGET_DIR/debug"
fi
inmail="$bin_dir/inmail"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total=$((ORDINARY + BIG))
"$bin_dir/examples/gen_bounces" "$work/corpus" "$total" 2>/dev/null

# The last BIG DSNs get an attachment of BIG_MB MB (base64, CRLF lines)
# before their closing boundary.
head -c $((BIG_MB * 1000 * 1000 * 3 / 4)) /dev/urandom | base64 -w 76 | sed 's/$/\r/' >"$work/pad"
for ((i = ORDINARY; i < total; i++)); do
    f="$work/corpus/maildir/new/$(printf '%08d' "$i").bench"
    {
        head -n -1 "$f"
        printf -- '--=_b%d\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' "$i"
        cat "$work/pad"
        printf -- '--=_b%d--\r\n' "$i"
    } >"$f.tmp"
    mv "$f.tmp" "$f"
done
size_mib=$(du -sm "$work/corpus/maildir" | cut -f1)

rules=config/rules.toml
_pg_psql "$base/postgres" -qc 'drop database if exists inmail_bench_bigmail with (force)' \
    -c 'create database inmail_bench_bigmail' >/dev/null
export INMAIL__DATABASE__URL="$bench_url"
"$inmail" migrate >/dev/null
"$inmail" rules import "$rules" >/dev/null
"$inmail" deliveries import "$work/corpus/deliveries.csv" >/dev/null
cat >"$work/inmail.toml" <<TOML
[database]
max_connections = $((WORKERS + 4))
[daemon]
workers = $WORKERS
[log]
level = "info"
[[mailbox]]
name = "bench"
kind = "maildir"
path = "$work/corpus/maildir"
TOML
sync
start=$(date +%s.%N)
status=0
/usr/bin/time -v -o "$work/time.txt" \
    "$inmail" run --once --config "$work/inmail.toml" >"$work/summary.json" 2>"$work/log.jsonl" || status=$?
end=$(date +%s.%N)
rss_kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/time.txt")
secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
done_rows=$(_pg_psql "$bench_url" -Atqc "select count(*) from intake where status = 'done'")
big_done=$(_pg_psql "$bench_url" -Atqc "select count(*) from intake where status = 'done' and octet_length(raw) > 1000000")
events=$(_pg_psql "$bench_url" -Atqc "select count(distinct address) from bounce_events where delivery_log_id is not null")
left=$(find "$work/corpus/maildir/new" -type f | wc -l)
echo "profile=$PROFILE workers=$WORKERS: $ORDINARY ordinary + $BIG x ${BIG_MB} MB bounces (${size_mib} MiB) in ${secs}s," \
    "peak RSS $((rss_kb / 1024)) MiB; $done_rows done ($big_done big), $events addresses counted, $left left in new/, exit $status"
[ "$status" -eq 0 ] || { tail -5 "$work/log.jsonl"; exit 1; }
[ "$done_rows" -eq "$total" ] || { echo "not every message was processed" >&2; exit 1; }
[ $((rss_kb / 1024)) -le "$MAX_RSS_MIB" ] || { echo "peak RSS over ${MAX_RSS_MIB} MiB" >&2; exit 1; }
