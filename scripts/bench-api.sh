#!/usr/bin/env bash
# Load benchmark of the HTTP API (`inmail serve`, release build) on an
# addresses table of 1,000,000 rows (10 % not sendable: 5 % quarantined,
# 5 % denylisted), with 4 concurrent clients (wrk, from Debian):
#
#   1. POST /v1/addresses/check, 1,000 addresses per request, against the
#      same lookup sent straight to PostgreSQL by pgbench (one `= ANY`
#      query per 1,000 addresses): addresses/s of both and their ratio;
#   2. GET /v1/addresses/{a}: requests/s;
#   3. POST /v1/deliveries, 1,000 new rows per request: rows/s;
#   4. POST /v1/failures, 100 new synchronous failures per request: failures/s;
# each with wrk's p50/p99 latency.
#
#   scripts/bench-api.sh                   # DURATION=20 (seconds per run), CLIENTS=4
#   DURATION=10 scripts/bench-api.sh
# Installs wrk with apt when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-4}
ROWS=${ROWS:-1000000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

command -v wrk >/dev/null 2>&1 || apt_install wrk || { echo "bench-api.sh: wrk is needed" >&2; exit 1; }
pg_provision
bin=$(_pg_bindir)
pgbench=${bin:+$bin/pgbench}
command -v pgbench >/dev/null 2>&1 && pgbench=$(command -v pgbench)
[ -x "${pgbench:-}" ] || { echo "bench-api.sh: pgbench not found (postgresql package)" >&2; exit 1; }

base=${DATABASE_URL%/*}
url="$base/inmail_bench_api"
[ -n "${INMAIL_BIN:-}" ] || cargo build --release --quiet --bin inmail
inmail=${INMAIL_BIN:-$TARGET_DIR/release/inmail}

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

echo "bench-api.sh: loading $ROWS addresses" >&2
_pg_psql "$base/postgres" -qc 'drop database if exists inmail_bench_api with (force)' \
    -c 'create database inmail_bench_api' >/dev/null
INMAIL__DATABASE__URL="$url" "$inmail" migrate >/dev/null
_pg_psql "$url" -q <<SQL >/dev/null
INSERT INTO addresses (address, domain, status, error_count, last_reason, last_category,
                       quarantined_at, updated_at)
SELECT 'u' || g || '@d' || (g % 1000) || '.example', 'd' || (g % 1000) || '.example',
       CASE WHEN g % 20 = 0 THEN 'quarantined' WHEN g % 20 = 10 THEN 'denylisted'
            WHEN g % 20 = 5 THEN 'erroneous' ELSE 'valid' END,
       CASE WHEN g % 20 IN (0, 5) THEN 1 ELSE 0 END,
       CASE WHEN g % 20 = 0 THEN 'user_unknown' WHEN g % 20 = 10 THEN 'complaint' END,
       CASE WHEN g % 20 = 0 THEN 'user_unknown' WHEN g % 20 = 10 THEN 'spam_complaint' END,
       CASE WHEN g % 20 IN (0, 10) THEN now() END,
       now()
  FROM generate_series(0, $ROWS - 1) g;
VACUUM ANALYZE addresses;
SQL

port=$(_pg_free_port)
export INMAIL_BENCH_TOKEN=bench-token-0123456789abcdef
cat >"$work/inmail.toml" <<TOML
[database]
url = "$url"
max_connections = 16
[log]
level = "warn"
[http]
listen = "127.0.0.1:$port"
[[http.token]]
name = "bench"
scope = "write"
token_env = "INMAIL_BENCH_TOKEN"
TOML
INMAIL__DATABASE__URL="$url" "$inmail" serve --config "$work/inmail.toml" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

# wrk scripts: bodies made in Lua (per thread, so the ids never repeat)
cat >"$work/common.lua" <<LUA
token = "$INMAIL_BENCH_TOKEN"
rows = $ROWS
counter = 0
thread_id = 0
function setup(thread)
  thread:set("thread_id", (setup_n or 0))
  setup_n = (setup_n or 0) + 1
end
function addr(g) return "u" .. g .. "@d" .. (g % 1000) .. ".example" end
LUA
cat "$work/common.lua" - >"$work/check.lua" <<'LUA'
bodies = {}
function init(args)
  math.randomseed(os.time() + thread_id)
  for b = 1, 64 do
    local k = math.random(0, rows - 1000)
    local t = {}
    for g = k, k + 999 do t[#t + 1] = '"' .. addr(g) .. '"' end
    bodies[b] = '{"addresses":[' .. table.concat(t, ",") .. ']}'
  end
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/v1/addresses/check",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    bodies[counter % 64 + 1])
end
LUA
cat "$work/common.lua" - >"$work/get.lua" <<'LUA'
function init(args) math.randomseed(os.time() + thread_id) end
function request()
  return wrk.format("GET", "/v1/addresses/" .. addr(math.random(0, rows - 1)),
    {["Authorization"] = "Bearer " .. token})
end
LUA
cat "$work/common.lua" - >"$work/deliveries.lua" <<'LUA'
function request()
  counter = counter + 1
  local t = {}
  for i = 1, 1000 do
    local n = (thread_id * 1000000 + counter) * 1000 + i
    t[i] = '{"message_id":"<b' .. n .. '@bench.example>","address":"' .. addr(n % rows) ..
           '","delivery":"bench","tracking_id":"bt' .. n .. '"}'
  end
  return wrk.format("POST", "/v1/deliveries",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    "[" .. table.concat(t, ",") .. "]")
end
LUA
cat "$work/common.lua" - >"$work/failures.lua" <<'LUA'
replies = {
  "550 5.1.1 <%s>: Recipient address rejected: User unknown",
  "452 4.2.2 <%s>: Mailbox full",
  "421 4.7.0 Try again later, closing connection",
  "550 5.7.1 Message rejected as spam",
}
function request()
  counter = counter + 1
  local t = {}
  for i = 1, 100 do
    local n = (thread_id * 1000000 + counter) * 100 + i
    local a = addr((n * 7919) % rows)
    local reply = string.format(replies[n % #replies + 1], a)
    t[i] = '{"id":"bf' .. n .. '","address":"' .. a .. '","message_id":"<bf' .. n ..
           '@bench.example>","delivery":"bench","reply":"' .. reply .. '"}'
  end
  return wrk.format("POST", "/v1/failures",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    "[" .. table.concat(t, ",") .. "]")
end
LUA

# wrk --latency output → "rps p50_ms p99_ms non2xx"
run_wrk() {
    local script=$1 out
    out=$(wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --latency -s "$work/$script" "http://127.0.0.1:$port")
    echo "$out" >"$work/$script.out"
    awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      /Requests\/sec:/ { rps = $2 }
      /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
      /Non-2xx/ { bad = $NF }
      END { printf "%.1f %.2f %.2f %d\n", rps, p50, p99, bad + 0 }' <<<"$out"
}

echo "bench-api.sh: pgbench, the check's query straight to PostgreSQL" >&2
cat >"$work/lookup.sql" <<SQL
\set k random(0, $ROWS - 1000)
SELECT address, status, last_reason, last_category, quarantined_at, release_at
  FROM addresses
 WHERE address = ANY (ARRAY(SELECT 'u' || g || '@d' || (g % 1000) || '.example'
                              FROM generate_series(:k, :k + 999) g))
   AND (status = 'denylisted' OR (status = 'quarantined' AND (release_at IS NULL OR release_at > now())));
SQL
pg_tps=$("$pgbench" -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$work/lookup.sql" "$url" 2>/dev/null |
    awk '/^tps/ { print $3; exit }')
pg_rate=$(awk -v t="$pg_tps" 'BEGIN { printf "%.0f", t * 1000 }')

echo "bench-api.sh: POST /v1/addresses/check" >&2
read -r c_rps c_p50 c_p99 c_bad < <(run_wrk check.lua)
check_rate=$(awk -v r="$c_rps" 'BEGIN { printf "%.0f", r * 1000 }')
ratio=$(awk -v a="$check_rate" -v b="$pg_rate" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
echo "bench-api.sh: GET /v1/addresses/{a}" >&2
read -r g_rps g_p50 g_p99 g_bad < <(run_wrk get.lua)
echo "bench-api.sh: POST /v1/deliveries" >&2
read -r d_rps d_p50 d_p99 d_bad < <(run_wrk deliveries.lua)
echo "bench-api.sh: POST /v1/failures" >&2
read -r f_rps f_p50 f_p99 f_bad < <(run_wrk failures.lua)

# GET of an unknown address is a 404, counted by wrk as non-2xx: all are known here.
cat <<OUT
| measure | rate | p50 | p99 | non-2xx |
|---|---:|---:|---:|---:|
| pgbench: the check's lookup straight to PostgreSQL | $pg_rate addresses/s | | | |
| POST /v1/addresses/check (1,000 per request) | $check_rate addresses/s ($c_rps req/s) = ${ratio} × pgbench | $c_p50 ms | $c_p99 ms | $c_bad |
| GET /v1/addresses/{a} | $g_rps req/s | $g_p50 ms | $g_p99 ms | $g_bad |
| POST /v1/deliveries (1,000 rows per request) | $(awk -v r="$d_rps" 'BEGIN { printf "%.0f", r * 1000 }') rows/s | $d_p50 ms | $d_p99 ms | $d_bad |
| POST /v1/failures (100 per request) | $(awk -v r="$f_rps" 'BEGIN { printf "%.0f", r * 100 }') failures/s | $f_p50 ms | $f_p99 ms | $f_bad |
OUT
echo "($CLIENTS clients, ${DURATION}s each, $ROWS addresses, $(nproc) CPUs)"
