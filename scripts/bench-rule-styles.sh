#!/usr/bin/env bash
# What the way a rule is written costs: `inmail qualify --json` over the
# shared corpus copied COPIES times, with the default rules plus one extra
# rule of the same meaning ("the mailbox is frozen", which no message of the
# corpus says, so it is tried on every diagnostic) written in each ordinary
# regex style. The extra rule runs first (priority 0). The styles are run in
# turn, RUNS rounds, alternating their order; prints each one's median wall
# time, spread, and ratio to the best-shaped form (a plain phrase).
#
#   scripts/bench-rule-styles.sh            # COPIES=20 RUNS=11
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/build.sh
source scripts/lib/build.sh

COPIES=${COPIES:-20}
RUNS=${RUNS:-11}
src=()
for d in ../shared/corpus/bounces ../shared/corpus/unlabelled-bounces; do
    [ -d "$d" ] && src+=("$d")
done
[ ${#src[@]} -gt 0 ] || src=(tests/fixtures/bounces)

inmail=${INMAIL:-$(release_build --bin inmail)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/mail"
for i in $(seq 1 "$COPIES"); do
    for d in "${src[@]}"; do
        for f in "$d"/*; do
            [ -f "$f" ] && cp "$f" "$work/mail/$i-$(basename "$d")-$(basename "$f")"
        done
    done
done

# name, then the pattern (TOML literal string: no escapes)
styles=(
    "phrase" 'mailbox (?:is )?frozen'
    "word-boundaries" '\bmailbox (?:is )?frozen\b'
    "dot-star-between" 'mailbox.*frozen'
    "dot-star-around" '.*mailbox.*frozen.*'
    "inline-flag" '(?i)MAILBOX (?:IS )?FROZEN'
    "unicode-classes" '\bmail\p{L}*\W+(?:is\W+)?frozen\b'
    "leading-class" '\p{L}+box\s+(?:is\s+)?frozen'
    "word-classes" '\w+box\s+(?:\w+\s+)?frozen'
    "no-literal-prefix" '\d{3}[\s\S]{0,40}\bfrozen\b'
)
specs=()
for ((i = 0; i < ${#styles[@]}; i += 2)); do
    name=${styles[i]}
    {
        cat config/rules.toml
        printf "\n[[rule]]\nid = \"extra\"\npattern = '%s'\n" "${styles[i + 1]}"
        printf 'type = "hard"\nreason = "account_disabled"\ncategory = "account_disabled"\npriority = 0\n'
    } >"$work/$name.toml"
    specs+=("$name|$inmail qualify --json --rules $work/$name.toml $work/mail")
done
n=$(ls "$work/mail" | wc -l)
echo "inmail qualify --json over $n messages, default rules + one extra rule, $RUNS rounds"
python3 - "$RUNS" "${specs[@]}" <<'PY'
import os, shlex, statistics, subprocess, sys, time
runs = int(sys.argv[1])
variants = [(s.split("|", 1)[0], shlex.split(s.split("|", 1)[1])) for s in sys.argv[2:]]
wall = {name: [] for name, _ in variants}
cpu = {name: [] for name, _ in variants}
for name, cmd in variants:  # warm the page cache, check the rule compiles
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
for r in range(runs):
    for name, cmd in variants if r % 2 == 0 else variants[::-1]:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        wall[name].append(time.perf_counter() - start)
        if status != 0:
            sys.exit(f"{name} failed")
        cpu[name].append(usage.ru_utime + usage.ru_stime)
base = statistics.median(wall[variants[0][0]])
base_cpu = statistics.median(cpu[variants[0][0]])
for name, _ in variants:
    t = sorted(wall[name])
    m, c = statistics.median(t), statistics.median(cpu[name])
    print(f"{name:18} median {m:.3f} s wall (range {t[0]:.3f}-{t[-1]:.3f}), {c:.3f} s CPU: "
          f"{m / base:.2f}x the phrase ({c / base_cpu:.2f}x in CPU time)")
PY
