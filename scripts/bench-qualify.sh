#!/usr/bin/env bash
# `inmail qualify --json` over the shared corpus (../shared/corpus, else
# tests/fixtures/bounces) copied COPIES times into a temporary folder:
# each command given is run RUNS times, the commands alternated (the order
# reversed every other round: the machine's speed drifts), and its median
# wall time, range, CPU time and peak RSS printed, with the ratio of its
# median to the first command's. A command is a binary, or a binary with
# what goes before it (`env NAME=VALUE BIN`); without one, the release
# build of this tree. The one-thread parse + qualify figure is
# `cargo bench --bench qualify`.
#
#   scripts/bench-qualify.sh                        # COPIES=20 RUNS=15
#   scripts/bench-qualify.sh target/release/inmail /tmp/inmail-before
#   PGO=1 scripts/bench-qualify.sh                  # inmail built by scripts/pgo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/build.sh
source scripts/lib/build.sh

COPIES=${COPIES:-20}
RUNS=${RUNS:-15}
src=()
for d in ../shared/corpus/bounces ../shared/corpus/unlabelled-bounces; do
    [ -d "$d" ] && src+=("$d")
done
[ ${#src[@]} -gt 0 ] || src=(tests/fixtures/bounces)

commands=("$@")
[ ${#commands[@]} -gt 0 ] || commands=("$(release_build --bin inmail)")
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
echo "inmail qualify --json over $n messages ($COPIES copies of ${src[*]}), $RUNS runs each"
python3 - "$RUNS" "$work" "${commands[@]}" <<'PY'
import os, shlex, statistics, subprocess, sys, time
runs, folder, commands = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
argvs = [shlex.split(c) + ["qualify", "--json", folder] for c in commands]
wall = [[] for _ in argvs]
cpu = [[] for _ in argvs]
rss = [[] for _ in argvs]
for argv in argvs:  # the page cache warmed, each command checked
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
for r in range(runs):
    order = list(range(len(argvs)))
    for i in order if r % 2 == 0 else order[::-1]:
        start = time.perf_counter()
        p = subprocess.Popen(argvs[i], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        wall[i].append(time.perf_counter() - start)
        if status != 0:
            sys.exit(f"{commands[i]} failed")
        cpu[i].append(usage.ru_utime + usage.ru_stime)
        rss[i].append(usage.ru_maxrss)
first = statistics.median(wall[0])
for i, c in enumerate(commands):
    w = sorted(wall[i])
    m = statistics.median(w)
    print(f"{c}: median {m:.3f} s wall (range {w[0]:.3f}-{w[-1]:.3f}), "
          f"{statistics.median(cpu[i]):.3f} s CPU, {statistics.median(rss[i]) // 1024} MiB peak RSS, "
          f"{m / first:.2f}x the first")
PY
