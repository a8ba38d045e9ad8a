"""Structural checks of a Grafana dashboard JSON (no Grafana needed).

Grafana is not packaged where Strom is tested, so its own schema checks cannot
run; this checks what a broken dashboard usually gets wrong: panel ids unique,
panels on the 24-column grid without overlaps, every query panel on the
${datasource} variable with refIds unique and a PromQL expression, every
$variable used is defined, and the dashboard's identity fields are set. The
queries themselves run against a real Prometheus in
tests/integration/test_metrics.py.

With `--metrics SCRAPE` (a /metrics answer saved to a file) it also checks that
every metric a query names is one the broker exports: a renamed or misspelt
metric otherwise only shows as an empty panel, or not at all behind `or` and
`absent()`. tests/integration/test_dashboard_names.py runs this against a
broker that has served traffic.

    python deploy/grafana/lint_dashboard.py deploy/grafana/strom.json
    python deploy/grafana/lint_dashboard.py --metrics scrape.txt deploy/grafana/strom.json
"""

from __future__ import annotations

import json
import re
import sys

BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__all"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")

# PromQL words that are not metric names where they stand alone (functions and aggregations
# are recognised by the bracket after them, or by a `by`/`without` clause).
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small scanner, not a parser: enough
    for dashboards and rules, which select series by name)."""
    s = _STRING.sub('""', expr)
    s = VARIABLE.sub(" ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery windows
    s = _LABEL_LIST.sub(" ", s)
    names = set()
    for m in _WORD.finditer(s):
        word = m.group(0)
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue  # a number's exponent or a duration's unit: 1e3, 5m
        if s[m.end():].lstrip().startswith("(") or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def exported_names(scrape: str) -> set[str]:
    """The series names in a /metrics answer (text format 0.0.4): histograms as their
    _bucket, _sum and _count series, as queries name them."""
    out = set()
    for line in scrape.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            m = _WORD.match(line)
            if m:
                out.add(m.group(0))
    return out


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    """(panel title, expression) of every query, rows' nested panels included."""
    out = []
    panels = list(dash.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for t in panel.get("targets", []):
            out.append((str(panel.get("title")), t.get("expr", "")))
    return out


def unknown_metrics(exprs: list[tuple[str, str]], exported: set[str]) -> list[str]:
    """Each query that names a metric neither exported nor made by Prometheus."""
    out = []
    for where, expr in exprs:
        for name in sorted(metric_names(expr) - exported - PROMETHEUS_SERIES):
            out.append(f"{where}: {name} is not exported (in {expr!r})")
    return out


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
    exported = None
    if argv[:1] == ["--metrics"]:
        if len(argv) < 2:
            print("--metrics needs a file: a saved /metrics answer")
            return 2
        with open(argv[1], encoding="utf-8") as f:
            exported = exported_names(f.read())
        argv = argv[2:]
    failed = 0
    for path in argv:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        problems = lint(dash)
        if exported is not None:
            problems += unknown_metrics(dashboard_exprs(dash), exported)
        for p in problems:
            print(f"  {p}")
        print(f"{'FAIL' if problems else 'ok'}: dashboard lint: {path}")
        failed += bool(problems)
    return 1 if failed or not argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
