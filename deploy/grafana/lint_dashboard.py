"""Structural checks of a Grafana dashboard JSON (no Grafana needed).

Grafana is not packaged where Strom is tested, so its own schema checks cannot
run; this checks what a broken dashboard usually gets wrong: panel ids unique,
panels on the 24-column grid without overlaps, every query panel on the
${datasource} variable with refIds unique and a PromQL expression, every
$variable used is defined, and the dashboard's identity fields are set. The
queries themselves run against a real Prometheus in
tests/integration/test_metrics.py.

    python deploy/grafana/lint_dashboard.py deploy/grafana/strom.json
"""

from __future__ import annotations

import json
import re
import sys

BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__all"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def lint(dash: dict) -> list[str]:
    out: list[str] = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time"):
        if key not in dash:
            out.append(f"no {key}")
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    ids: set[int] = set()
    cells: dict[tuple[int, int], int] = {}
    for panel in dash.get("panels", []):
        pid = panel.get("id")
        where = f"panel {pid} ({panel.get('title')!r})"
        if not isinstance(pid, int) or pid in ids:
            out.append(f"{where}: id missing or repeated")
        ids.add(pid)
        g = panel.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
            out.append(f"{where}: gridPos incomplete")
            continue
        if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24:
            out.append(f"{where}: outside the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    out.append(f"{where}: overlaps panel {cells[(x, y)]}")
                    break
                cells[(x, y)] = pid
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            out.append(f"{where}: not on the ${{datasource}} variable")
        targets = panel.get("targets", [])
        if not targets:
            out.append(f"{where}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            out.append(f"{where}: refIds missing or repeated")
        for t in targets:
            expr = t.get("expr", "")
            if not expr.strip():
                out.append(f"{where}: a query without an expression")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                out.append(f"{where}: unbalanced brackets in {expr!r}")
            for name in VARIABLE.findall(expr):
                if name not in defined and name not in BUILTIN_VARIABLES:
                    out.append(f"{where}: ${name} is not a dashboard variable")
    return out


def main(argv: list[str]) -> int:
    failed = 0
    for path in argv:
        with open(path, encoding="utf-8") as f:
            problems = lint(json.load(f))
        for p in problems:
            print(f"  {p}")
        print(f"{'FAIL' if problems else 'ok'}: dashboard lint: {path}")
        failed += bool(problems)
    return 1 if failed or not argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
