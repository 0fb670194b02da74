#!/usr/bin/env bash
# Whole-process throughput against the two reference parsers, on the same
# messages, the same machine, the same minutes: `inmail qualify --json` over
# the shared corpus copied COPIES times (6,100 messages by default), against
# Sisimai (Perl, `Sisimai->dump`, its JSON) and flufl.bounce (Mailman's,
# Python, `scan_message` on each file), each a fresh process that reads every
# file, start-up included.
#
# This machine's speed drifts by a third from one hour to the next, more than
# most changes worth measuring, so an absolute messages/s figure only
# compares with one taken the same minutes. The ratio to a reference run
# alongside does not drift with it; the runs alternate (inmail, references,
# inmail) and each round takes the better of inmail's two. Wall time and CPU
# time (user + system, which another load on the machine disturbs less) are
# both reported.
#
#   scripts/bench-relative.sh            # ROUNDS=5 COPIES=20
#   PGO=1 scripts/bench-relative.sh      # inmail built by scripts/pgo.sh
#   BINS="old/inmail target/release/inmail" scripts/bench-relative.sh
#                                        # several builds, each against the references
#
# flufl.bounce is installed from PyPI into target/bench-venv on first use.
# Sisimai is Debian's libsisimai-perl, installed with apt-get when it is
# missing and apt-get can run; a reference that cannot be installed is left
# out with one line.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/build.sh
source scripts/lib/build.sh
# shellcheck source=scripts/lib/apt.sh
source scripts/lib/apt.sh

ROUNDS=${ROUNDS:-5}
COPIES=${COPIES:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
src=../shared/corpus/bounces
[ -d "$src" ] || src=tests/fixtures/bounces

venv="$TARGET_DIR/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import flufl.bounce' 2>/dev/null; then
    { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet flufl.bounce; } ||
        echo "bench-relative: flufl.bounce is left out (PyPI not reachable?)" >&2
fi
if ! perl -MSisimai -e1 2>/dev/null; then
    apt_install --no-install-recommends libsisimai-perl ||
        echo "bench-relative: Sisimai is left out" >&2
fi
BINS=${BINS:-$(release_build --bin inmail)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 "$COPIES"); do
    for f in "$src"/*; do
        [ -f "$f" ] && cp "$f" "$work/$i-$(basename "$f")"
    done
done
echo "Sisimai: $(perl -MSisimai -e 'print Sisimai->version' 2>/dev/null || echo absent);" \
    "flufl.bounce: $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("flufl.bounce"))' 2>/dev/null || echo absent)"

python3 - "$ROUNDS" "$work" "$venv/bin/python" $BINS <<'PY'
import os, resource, statistics, subprocess, sys, time

rounds, work, venv_python, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
n = len(os.listdir(work))
FLUFL = r"""
import email, os, sys
from flufl.bounce import scan_message
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    with open(os.path.join(d, f), "rb") as fh:
        try:
            scan_message(email.message_from_bytes(fh.read()))
        except Exception:
            pass
"""
commands = {
    "Sisimai": ["perl", "-MSisimai", "-e", "print Sisimai->dump($ARGV[0])", work],
    "flufl.bounce": [venv_python, "-c", FLUFL, work],
}
probes = {
    "Sisimai": ["perl", "-MSisimai", "-e1"],
    "flufl.bounce": [venv_python, "-c", "import flufl.bounce"],
}
available = {}
for name, probe in probes.items():
    try:
        available[name] = subprocess.run(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        available[name] = False

def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu

print(f"whole process over {n} messages ({work})")
refs_available = [name for name in commands if available[name]]
ratios = {(b, name): {"wall": [], "cpu": []} for b in bins for name in refs_available}
for r in range(1, rounds + 1):
    before = {b: run([b, "qualify", "--json", work]) for b in bins}
    refs = {name: run(commands[name]) for name in refs_available}
    after = {b: run([b, "qualify", "--json", work]) for b in bins}
    for b in bins:
        ours = (min(before[b][0], after[b][0]), min(before[b][1], after[b][1]))
        line = f"round {r}: {b} {ours[0]:.3f} s wall ({n / ours[0]:,.0f}/s), {ours[1]:.3f} s cpu"
        for name, (wall, cpu) in refs.items():
            ratios[(b, name)]["wall"].append(wall / ours[0])
            ratios[(b, name)]["cpu"].append(cpu / ours[1])
            line += f"; {name} {wall:.2f} s wall, {cpu:.2f} s cpu (x{wall / ours[0]:.1f} wall, x{cpu / ours[1]:.1f} cpu)"
        print(line, flush=True)
for (b, name), rs in ratios.items():
    w, c = sorted(rs["wall"]), sorted(rs["cpu"])
    print(f"{b} / {name}: median x{statistics.median(w):.1f} wall (runs {', '.join(f'{x:.1f}' for x in w)}),"
          f" median x{statistics.median(c):.1f} cpu (runs {', '.join(f'{x:.1f}' for x in c)})")
PY
