#!/usr/bin/env python3
"""Prints pcad's module import graph and fails (exit 1) on a cycle.

Reads src/**/*.rs as text: `use` statements (braces expanded) and inline `crate::`/`super::`
paths, resolved through `pub use` re-exports one level. An edge A -> B is drawn between siblings
under their nearest common parent (`crate: ca -> status`, `pki: cert -> name`); a module using
its own parent or children draws none. Unit tests (`#[cfg(test)]` onwards, `tests.rs`) are left
out: they may reach anywhere to set up.

Usage: scripts/import-graph.py [SRC_DIR]   (default: src beside this script's parent)
"""

import os
import re
import sys


def module_of(rel):
    """src-relative file path -> module path (tuple of names)."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in filter(None, items):
        for e in expand(item):
            out.append(prefix + e)
    return out


def resolve(path, here, modules):
    """A path as written in module `here` -> absolute segments, or None if outside the crate."""
    segs = [s.split(" as ")[0] for s in path.split("::") if s]
    segs = [re.sub(r"\bas\b.*", "", s) for s in segs]
    if not segs:
        return None
    base = list(here)
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif tuple(base + [segs[0]]) not in modules:
        return None
    return tuple(base + segs)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    texts = {}
    for root, _, files in os.walk(src):
        for f in files:
            # main.rs is the binary's root (it reaches the library as `pcad::`); tests.rs holds
            # unit tests.
            if f.endswith(".rs") and f not in ("tests.rs", "main.rs"):
                rel = os.path.relpath(os.path.join(root, f), src)
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    texts[module_of(rel)] = strip(fh.read())
    modules = set(texts)

    uses = {}
    reexports = {}
    for mod, text in texts.items():
        paths = []
        for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
            for p in expand(m.group(2)):
                r = resolve(p, mod, modules)
                if r:
                    paths.append(r)
                    if m.group(1) and r[:-1] in modules and r[:-1] != mod:
                        reexports[mod + (r[-1],)] = r[:-1]
        for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
            r = resolve(m.group(1), mod, modules)
            if r:
                paths.append(r)
        uses[mod] = paths

    edges = {}
    for mod, paths in uses.items():
        for p in paths:
            target = next((p[:n] for n in range(len(p), -1, -1) if p[:n] in modules), ())
            if len(p) > len(target) and target + (p[len(target)],) in reexports:
                target = reexports[target + (p[len(target)],)]
            n = 0
            while n < min(len(mod), len(target)) and mod[n] == target[n]:
                n += 1
            if n == len(mod) or n == len(target):
                continue  # self, parent or child
            parent = "::".join(mod[:n]) or "crate"
            edges.setdefault(parent, {}).setdefault(mod[n], set()).add(target[n])

    cycles = []
    for parent in sorted(edges):
        graph = edges[parent]
        print(f"{parent}:")
        for a in sorted(graph):
            print(f"  {a} -> {', '.join(sorted(graph[a]))}")
        for scc in sccs(graph):
            if len(scc) > 1:
                cycles.append(f"{parent}: {' <-> '.join(sorted(scc))}")
    if cycles:
        print("cycles:")
        for c in cycles:
            print("  " + c)
        return 1
    print("no cycles")
    return 0


def sccs(graph):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []
    nodes = set(graph) | {b for bs in graph.values() for b in bs}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            out.append(comp)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
