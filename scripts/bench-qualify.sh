#!/usr/bin/env bash
# `inmail qualify --json` over a folder of about 10,000 messages: the shared
# corpus (../shared/corpus, else tests/fixtures/bounces) copied COPIES times
# into a temporary folder, RUNS runs; prints wall time and peak RSS of each.
# The one-thread parse + qualify figure is `cargo bench --bench qualify`.
#
#   scripts/bench-qualify.sh              # COPIES=30 RUNS=5
#   PGO=1 scripts/bench-qualify.sh        # inmail built by scripts/pgo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/build.sh
source scripts/lib/build.sh

COPIES=${COPIES:-30}
RUNS=${RUNS:-5}
src=()
for d in ../shared/corpus/bounces ../shared/corpus/unlabelled-bounces; do
    [ -d "$d" ] && src+=("$d")
done
[ ${#src[@]} -gt 0 ] || src=(tests/fixtures/bounces)

inmail=$(release_build --bin inmail)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 "$COPIES"); do
    for d in "${src[@]}"; do
        for f in "$d"/*; do
            [ -f "$f" ] && cp "$f" "$work/$i-$(basename "$d")-$(basename "$f")"
        done
    done
done
n=$(ls "$work" | wc -l)
echo "inmail qualify --json over $n messages ($COPIES copies of ${src[*]})"
for r in $(seq 1 "$RUNS"); do
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "run $r: %e s wall, %M KiB peak RSS" "$inmail" qualify --json "$work" >/dev/null
    else
        # no GNU time (apt-get install time): wall time only
        TIMEFORMAT="run $r: %R s wall"
        time "$inmail" qualify --json "$work" >/dev/null
    fi
done
