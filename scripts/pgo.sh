#!/usr/bin/env bash
# Runs a cargo command with profile-guided optimisation (PGO).
#
# Parse + qualify is branchy code over a large footprint (MIME, DSN fields,
# text heuristics, rules): with a profile, LLVM lays the hot paths out
# together and the cold ones aside, which on this machine gives about 10 %
# more messages/s with the same output. The profile comes from our own
# fixtures (tests/fixtures/bounces and examples/maildir, one per MTA
# format), never from the corpus the benchmarks measure.
#
#   scripts/pgo.sh build --release --bin inmail   # target/<host>/release/inmail
#   scripts/pgo.sh bench --bench qualify          # the criterion benchmark
#
# The profile (target/pgo/inmail.profdata) is made again when a source file,
# the rules or Cargo.lock is newer, or always with PGO_FRESH=1. Its
# llvm-profdata must match rustc's LLVM: rustup's llvm-tools component, or
# Debian's llvm-<major> (installed with apt-get when neither is there and
# we may).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/apt.sh
source scripts/lib/apt.sh

[ $# -gt 0 ] || { echo "usage: $0 <cargo command> [args...]" >&2; exit 2; }

host=$(rustc -vV | sed -n 's/^host: //p')
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
dir="$PWD/target/pgo"
profile="$dir/inmail.profdata"

find_profdata() {
    local tools
    tools="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
    if [ -x "$tools" ]; then
        echo "$tools"
    elif command -v "llvm-profdata-$llvm_major" >/dev/null; then
        command -v "llvm-profdata-$llvm_major"
    elif command -v llvm-profdata >/dev/null \
        && llvm-profdata --version | grep -q "LLVM version $llvm_major\."; then
        command -v llvm-profdata
    else
        return 1
    fi
}

profdata=$(find_profdata) || {
    echo "pgo: installing llvm-$llvm_major for llvm-profdata" >&2
    apt_install "llvm-$llvm_major" || true
    profdata=$(find_profdata) || {
        echo "pgo: no llvm-profdata for LLVM $llvm_major: run 'rustup component add llvm-tools'" \
            "or install llvm-$llvm_major" >&2
        exit 1
    }
}

stale() {
    [ -n "${PGO_FRESH:-}" ] || [ ! -s "$profile" ] && return 0
    [ -n "$(find src benches examples Cargo.toml Cargo.lock config/rules.toml \
        -newer "$profile" -print -quit)" ]
}

if stale; then
    echo "pgo: making the profile (instrumented build, then a run over the fixtures)" >&2
    rm -rf "$dir/raw"
    # --target keeps the flags off build scripts and proc macros
    RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$dir/raw" \
        cargo build --release --locked --quiet --target "$host" --target-dir "$dir/instrumented" \
        --example throughput
    ROUNDS=100 "$dir/instrumented/$host/release/examples/throughput" \
        tests/fixtures/bounces examples/maildir/new >&2
    "$profdata" merge -o "$profile.tmp" "$dir/raw"
    mv "$profile.tmp" "$profile"
fi

# A function changed since the profile was made simply gets no profile data.
cmd=$1
shift
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile" exec cargo "$cmd" --target "$host" "$@"
