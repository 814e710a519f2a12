#!/usr/bin/env python3
"""Finds import circles between the files of src/ (docs/ARCHITECTURE.md:
"no import circles"). An edge A -> B when A names an item of B through
`crate::...`, `super::...` or `self::...` (in a `use` or inline); `mod x;`
declarations are not imports, naming a child module's item is. Prints every circle; exits 1 when there is one.

    python3 scripts/import_cycles.py [SRC_DIR]
"""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
src = os.path.normpath(src)

def module_of(path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel

def file_of(mod):
    """The file that defines module path `mod` (list), or None."""
    if not mod:
        return os.path.join(src, "lib.rs")
    p = os.path.join(src, *mod)
    for c in (p + ".rs", os.path.join(p, "mod.rs")):
        if os.path.isfile(c):
            return c
    return None

def resolve(mod):
    """Longest prefix of `mod` that is a file's module."""
    for k in range(len(mod), -1, -1):
        f = file_of(mod[:k])
        if f:
            return f
    return None

files = []
for root, _, names in os.walk(src):
    for n in names:
        if n.endswith(".rs"):
            files.append(os.path.join(root, n))

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(l.split("//")[0] for l in text.splitlines())

def expand_use(body):
    """Flattens `a::{b, c::{d}}` into paths."""
    body = body.replace(" ", "").replace("\n", "")
    out = []
    def rec(prefix, s):
        # split top-level commas
        depth, cur, parts = 0, "", []
        for ch in s:
            if ch == "{": depth += 1
            if ch == "}": depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur); cur = ""
            else:
                cur += ch
        if cur: parts.append(cur)
        for p in parts:
            if "{" in p:
                i = p.index("{")
                rec(prefix + p[:i], p[i + 1:-1])
            else:
                out.append(prefix + p.split(" as ")[0].split("as")[0] if False else prefix + re.split(r"\bas\b", p)[0])
    rec("", body)
    return out

graph = {}
macros = {}
for f in files:
    t = open(f).read()
    for m in re.finditer(r"macro_rules!\s*(\w+)", t):
        macros[m.group(1)] = f

for f in files:
    here = module_of(f)
    text = strip_comments(open(f).read())
    # tests inside the file may use super::* freely; drop #[cfg(test)] mod tests blocks
    text = re.split(r"#\[cfg\(test\)\]\s*mod\s+tests", text)[0]
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths += expand_use(m.group(1))
    paths += re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text)
    # a child module named by its bare name (`fused::FusedNet` in model/mod.rs)
    children = re.findall(r"\bmod\s+(\w+)\s*;", text)
    for c in children:
        if re.search(r"(?<![:\w])" + c + r"::", text):
            paths.append("self::" + c + "::x")
    deps = set()
    for p in paths:
        seg = [s for s in p.split("::") if s]
        if not seg:
            continue
        if seg[0] == "crate":
            if len(seg) >= 2 and seg[1] in macros:
                target = macros[seg[1]]
            else:
                target = resolve(seg[1:])
        elif seg[0] in ("super", "self"):
            base = list(here)
            # a file x.rs or x/mod.rs is module `here`; super goes one up
            i = 0
            while i < len(seg) and seg[i] in ("super", "self"):
                if seg[i] == "super":
                    base = base[:-1]
                i += 1
            target = resolve(base + seg[i:])
        else:
            continue
        if target and os.path.normpath(target) != os.path.normpath(f):
            deps.add(os.path.normpath(target))
    graph[os.path.normpath(f)] = deps

# strongly connected components (Tarjan)
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1:
            sccs.append(comp)
for v in sorted(graph):
    if v not in index:
        strong(v)
for c in sccs:
    rel = sorted(os.path.relpath(x, src) for x in c)
    print("circle:", " <-> ".join(rel))
    for a in c:
        for b in graph[a]:
            if b in c:
                print(f"    {os.path.relpath(a, src)} -> {os.path.relpath(b, src)}")
if not sccs:
    print(f"no import circles among {len(graph)} files")
sys.exit(1 if sccs else 0)
