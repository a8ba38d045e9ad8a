#!/usr/bin/env python3
"""Attributes a perf profile (recorded with --call-graph dwarf) to Strom's own functions.

Usage: perf script -i perf.data | bench/tools/perf_attrib.py [--depth N]

For every sample it finds the innermost frame that belongs to Strom's crates (strom_log::,
strom_broker::, strom::) and reports, per such frame, the share of all samples and the leaf
functions (often the kernel's copy or page-fault routines) the time ended in. A flat
profile says *what* burns CPU (e.g. clear_page_erms); this says *which broker code* caused it.
"""
import collections
import re
import sys

OWN = re.compile(r"\b(strom_log|strom_broker|strom)::")


def samples(lines):
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
        elif line.startswith((" ", "\t")):
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", parts[1].rsplit(" (", 1)[0])
                frames.append(sym)
    if frames:
        yield frames


def main():
    depth = 1
    if "--depth" in sys.argv:
        depth = int(sys.argv[sys.argv.index("--depth") + 1])
    total = 0
    by_own = collections.Counter()
    leaves = collections.defaultdict(collections.Counter)
    for frames in samples(sys.stdin):
        total += 1
        own = [f for f in frames if OWN.search(f)]
        key = " <- ".join(own[:depth]) if own else "(no Strom frame: runtime, idle, kernel threads)"
        by_own[key] += 1
        leaves[key][frames[0]] += 1
    print(f"{total} samples")
    for key, n in by_own.most_common(25):
        print(f"{100 * n / total:5.1f}%  {key}")
        for leaf, m in leaves[key].most_common(4):
            print(f"          {100 * m / total:5.1f}%  {leaf}")


if __name__ == "__main__":
    main()
