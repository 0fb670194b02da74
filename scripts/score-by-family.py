#!/usr/bin/env python3
"""The shared scorer's figures, one line per MTA family.

The labelled corpus and its scorer live outside the project (../shared); this
script imports that scorer (its taxonomy, pairing and status rules) rather
than restating them, runs `inmail qualify --json` once over the labelled
bounces and prints, per family, the files, recipients, status, type and
reason agreement and the false hards (truth soft or ignored, answer hard).

  scripts/score-by-family.py --bin target/release/inmail
  scripts/score-by-family.py --bin ... --eval ../shared/eval --corpus ../shared/corpus --misses
"""
import argparse
import collections
import importlib.util
import json
import os
import sys


def load_scorer(eval_dir):
    sys.path.insert(0, eval_dir)  # score.py imports its neighbour adversarial.py
    spec = importlib.util.spec_from_file_location("score", os.path.join(eval_dir, "score.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.path.join(os.path.dirname(os.path.dirname(here)), "shared")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--eval", default=os.path.join(shared, "eval"))
    ap.add_argument("--corpus", default=os.path.join(shared, "corpus"))
    ap.add_argument("--misses", action="store_true", help="list each miss under its family")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.eval, "score.py")):
        sys.exit(f"score-by-family: no scorer at {args.eval} (--eval)")
    scorer = load_scorer(args.eval)
    labels = json.load(open(os.path.join(args.corpus, "labels-dev.json")))
    bounces = os.path.join(args.corpus, "bounces")
    names = sorted(n for n in labels if os.path.exists(os.path.join(bounces, n)))
    results, _, err = scorer.run(args.bin, [os.path.join(bounces, n) for n in names], 600)
    if err:
        sys.exit(f"score-by-family: {args.bin}: {err}")

    rows = collections.defaultdict(collections.Counter)
    misses = collections.defaultdict(list)
    for n in names:
        fam = labels[n].get("family", "?")
        row = rows[fam]
        row["files"] += 1
        res = results.get(n) or {}
        got = res.get("recipients") or []
        for e, g in scorer.pair(labels[n]["expect"], got):
            g = g or {}
            row["rcpts"] += 1
            row["status"] += scorer.status_ok(e.get("status"), g.get("status"))
            types, reasons = scorer.EXPECT.get(e["reason"], (None, None))
            if types is not None:
                row["type_n"] += 1
                if g.get("type") in types:
                    row["type"] += 1
                else:
                    misses[fam].append(f"{n}: type {g.get('type')} for {e['reason']}")
                if "hard" not in types and g.get("type") == "hard":
                    row["false_hard"] += 1
            if reasons is not None:
                row["reason_n"] += 1
                if g.get("reason") in reasons:
                    row["reason"] += 1
                else:
                    misses[fam].append(f"{n}: reason {g.get('reason')} for {e['reason']}")

    pct = lambda a, b: f"{100.0 * a / b:5.1f}" if b else "    -"
    print("| family | files | recipients | status % | type % | reason % | false hard |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = collections.Counter()
    for fam in sorted(rows):
        r = rows[fam]
        total.update(r)
        print(f"| {fam} | {r['files']} | {r['rcpts']} | {pct(r['status'], r['rcpts'])} | "
              f"{pct(r['type'], r['type_n'])} | {pct(r['reason'], r['reason_n'])} | {r['false_hard']} |")
    t = total
    print(f"| **all** | {t['files']} | {t['rcpts']} | {pct(t['status'], t['rcpts'])} | "
          f"{pct(t['type'], t['type_n'])} | {pct(t['reason'], t['reason_n'])} | {t['false_hard']} |")
    if args.misses:
        for fam in sorted(misses):
            print(f"\n{fam}:")
            for m in misses[fam]:
                print(f"  {m}")


if __name__ == "__main__":
    main()
