#!/usr/bin/env python3
"""Checks that the crate's imports point one way.

Reads every `src/**/*.rs`, collects the modules each file names
(`use crate::..`, `crate::..` paths, `use super::..`, `inmail::..` in
main.rs; comments, strings and `#[cfg(test)]` modules are left out) and
reports:

- an import from a module to one in a higher layer, or between two
  different modules of the same layer (`up: FILE -> FILE`);
- a top-level module missing from LAYERS (`unplaced: MODULE`);
- a cycle between files (`cycle: FILE FILE ...`, members sorted).

Known violations may be listed, one line each as printed, in an allow-list
file (`#` starts a comment); they are reported but do not fail the check.
Exit status: 0 when every violation is allowed, 1 otherwise.

usage: check-layers.py [--src DIR] [--allow FILE]
"""

import argparse
import os
import re
import sys

# Top to bottom: a module may import modules of the layers below its own.
# Modules of one layer are independent of each other.
LAYERS = [
    ["main"],
    ["cli"],
    ["app"],
    ["http"],
    ["ops"],
    ["pipeline", "source"],
    ["store"],
    ["domain"],
    ["telemetry", "metrics", "backoff"],
    ["config"],
    ["rules"],
    ["analysis"],
    ["text", "clock"],
    ["model"],
]

RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def strip_code(text):
    """The source with comments, string and char literals blanked out."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (
            i and (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                i += len(m.group(0))
                out.append("' '")
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(code):
    """The code without `#[cfg(test)] mod x { .. }` blocks."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", code)
        if not m:
            return code
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        code = code[: m.start()] + code[i:]


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    depth = 0
    for i, c in enumerate(tree):
        if c == "{":
            if depth == 0:
                prefix, inner = tree[:i], tree[i + 1: tree.rindex("}")]
                parts, d, start = [], 0, 0
                for j, ch in enumerate(inner):
                    d += {"{": 1, "}": -1}.get(ch, 0)
                    if ch == "," and d == 0:
                        parts.append(inner[start:j])
                        start = j + 1
                parts.append(inner[start:])
                return [p for part in parts if part for p in expand_use(prefix + part)]
            depth += 1
    return [tree.split(" as ")[0]]


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module path (tuple) -> file relative to src
        for root, _, names in os.walk(src):
            for name in names:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts = parts[:-1]
                if parts in (["lib"],):
                    parts = []
                self.files[tuple(parts)] = rel

    def module_of(self, rel):
        parts = rel[:-3].split(os.sep)
        if parts[-1] == "mod":
            parts = parts[:-1]
        return tuple(parts) if parts != ["lib"] else ()

    def resolve(self, path):
        """The file that defines the longest prefix of `path`."""
        for k in range(len(path), 0, -1):
            if path[:k] in self.files:
                return self.files[path[:k]]
        return None

    def edges(self):
        out = set()
        for mod, rel in self.files.items():
            with open(os.path.join(self.src, rel), encoding="utf-8") as f:
                code = drop_test_modules(strip_code(f.read()))
            here = mod
            paths = []
            for m in re.finditer(r"\buse\s+([^;]+);", code):
                paths.extend(expand_use(m.group(1)))
            paths.extend(m.group(0) for m in re.finditer(r"\b(?:crate|super|inmail)(?:::\w+)+", code))
            for p in paths:
                segs = [s for s in p.split("::") if s]
                if not segs:
                    continue
                if segs[0] == "crate" or (segs[0] == "inmail" and mod == ("main",)):
                    target = tuple(segs[1:])
                elif segs[0] == "super":
                    base = list(here)
                    while segs and segs[0] == "super":
                        base = base[:-1]
                        segs = segs[1:]
                    target = tuple(base + segs)
                elif segs[0] == "self":
                    target = tuple(list(here) + segs[1:])
                else:
                    continue
                dest = self.resolve(target)
                if dest and dest != rel:
                    out.add((rel, dest))
        return out


def top(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def cycles(nodes, edges):
    """Strongly connected components of more than one file (Tarjan)."""
    succ = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return sorted(comps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    ap.add_argument("--allow", help="allow-list of known violations")
    args = ap.parse_args()

    crate = Crate(args.src)
    edges = crate.edges()
    found = []
    for m in sorted({top(r) for r in crate.files.values()} - {"lib"}):
        if m not in RANK:
            found.append(f"unplaced: {m}")
    for a, b in sorted(edges):
        ta, tb = top(a), top(b)
        if ta == tb or ta == "lib" or tb == "lib" or ta not in RANK or tb not in RANK:
            continue
        if RANK[ta] >= RANK[tb]:
            found.append(f"up: {a} -> {b}")
    for comp in cycles(set(crate.files.values()), edges):
        found.append("cycle: " + " ".join(comp))

    allowed = set()
    if args.allow and os.path.exists(args.allow):
        with open(args.allow, encoding="utf-8") as f:
            allowed = {l.split("#")[0].strip() for l in f} - {""}
    bad = [v for v in found if v not in allowed]
    for v in found:
        print(("allowed  " if v in allowed else "VIOLATES ") + v)
    for v in sorted(allowed - set(found)):
        print(f"stale allow-list entry (remove it): {v}")
    print(f"{len(crate.files)} files, {len(edges)} imports, {len(found)} violations, {len(bad)} not allowed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
