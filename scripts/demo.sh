#!/usr/bin/env bash
# The main job, end to end: the inmail daemon drains the bundled example
# maildir (bounces in the formats of Postfix, Sendmail, qmail, Exim, Exchange,
# Gmail, Yahoo, Amazon SES, Domino, ARF complaints, auto-replies ...) into
# PostgreSQL, then shows what it did.
#
# PostgreSQL: INMAIL__DATABASE__URL if set; otherwise a local server on
# 127.0.0.1:5432 (database inmail_demo), or a private cluster under
# target/pg, installing the Debian package when needed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "demo.sh: cargo not found: install Rust (rustup) first" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building inmail (release)"
cargo build --release --locked --bin inmail
inmail="$root/target/release/inmail"

step "PostgreSQL"
if [ -z "${INMAIL__DATABASE__URL:-}" ]; then
    pg_provision
    # a clean database each run, so the demo shows one pass over the examples
    base=${INMAIL__DATABASE__URL%/*}
    _pg_psql "$base/postgres" -qc "DROP DATABASE IF EXISTS inmail_demo" -c "CREATE DATABASE inmail_demo" >/dev/null
    export INMAIL__DATABASE__URL="$base/inmail_demo"
fi
echo "database: ${INMAIL__DATABASE__URL}"

work="$root/target/demo"
rm -rf "$work" && mkdir -p "$work"
cp -r examples/maildir "$work/maildir"
find "$work/maildir" -name .keep -delete
cat > "$work/inmail.toml" <<TOML
[log]
format = "pretty"
level = "info,sqlx=warn"

[daemon]
workers = 2

[[mailbox]]
name = "demo-bounces"
kind = "maildir"
path = "$work/maildir"
after = "seen"
TOML

step "Schema, default rules, and what was sent (examples/deliveries.csv)"
"$inmail" --config "$work/inmail.toml" migrate
"$inmail" --config "$work/inmail.toml" rules import config/rules.toml
"$inmail" --config "$work/inmail.toml" deliveries import examples/deliveries.csv

step "The daemon drains the maildir ($(ls "$work/maildir/new" | wc -l) messages) and exits (inmail run --once)"
"$inmail" --config "$work/inmail.toml" run --once 2>&1 | tee "$work/run.log"

step "Per-recipient results (the log lines above, one per recipient; here as a table)"
"$inmail" --config "$work/inmail.toml" report --since 1d

step "Addresses no longer valid (quarantined, denylisted, erroneous)"
"$inmail" --config "$work/inmail.toml" quarantine list

step "Why one of them is quarantined"
# no pipe into head: under pipefail the writer's SIGPIPE would end the demo
listed=$("$inmail" --config "$work/inmail.toml" quarantine list --status quarantined --json)
first=$(sed -n '1s/.*"address":"\([^"]*\)".*/\1/p' <<<"$listed")
[ -n "$first" ] && "$inmail" --config "$work/inmail.toml" address "$first"

step "The \"to qualify\" queue: bounce texts no rule explained"
"$inmail" --config "$work/inmail.toml" qualifications list

step "Maildir after the run: processed messages moved to cur/ with the Seen flag"
echo "new/: $(ls "$work/maildir/new" | wc -l) files, cur/: $(ls "$work/maildir/cur" | wc -l) files"
echo
echo "Run it yourself: $inmail --config $work/inmail.toml run   (Ctrl-C to stop)"
