"""The operator's kit names only metrics the broker exports (issue 16): every metric a query
of the Grafana dashboard (deploy/grafana/strom.json) or an alert rule
(deploy/prometheus/strom-rules.yaml) selects is in /metrics once the broker has served
traffic, and docs/metrics.md's table lists exactly the families /metrics has. A renamed or
misspelt metric otherwise shows only as an empty panel, or as nothing at all behind `or`,
`absent()` or a comparison, and Prometheus is not needed to find it."""

from __future__ import annotations

import json
import re
import sys

import yaml

from conftest import REPO_ROOT
from test_metrics import DASHBOARD, RULES, http_get, metrics_broker, traffic
from helpers import unique_topic

sys.path.insert(0, str(REPO_ROOT / "deploy" / "grafana"))
import lint_dashboard  # noqa: E402

DOCS = REPO_ROOT / "docs" / "metrics.md"
# A documented row: | `name` | type | ...
DOC_ROW = re.compile(r"^\| `([a-z_:]+)` \| (counter|gauge|histogram|summary) \|", re.M)
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
# Families /metrics would have only once something happened that a test broker's traffic does
# not cause (each still documented); none today: every family is there from the start.
ONLY_AFTER_AN_EVENT: dict[str, str] = {}


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for g in groups for r in g["rules"]]


def documented() -> dict[str, str]:
    return dict(DOC_ROW.findall(DOCS.read_text()))


def scrape_after_traffic(make_broker) -> str:
    b, admin_port = metrics_broker(make_broker, **{"metrics.partition.labels.enable": "true"})
    traffic(b.bootstrap, unique_topic("names"), "names-" + unique_topic("g"))
    return http_get(admin_port, "/metrics")


def families(scrape: str) -> dict[str, str]:
    """Family name to type, from the # TYPE lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", scrape, re.M)}


def test_the_scanner_finds_the_names_a_query_selects():
    names = lint_dashboard.metric_names
    assert names('sum by (topic) (rate(strom_topic_records_in_total{instance=~"$instance"}[$__rate_interval]))') \
        == {"strom_topic_records_in_total"}
    assert names("predict_linear(strom_disk_free_bytes[6h], 4 * 3600) < 0 and "
                 "strom_disk_free_bytes / strom_disk_total_bytes < 0.25") \
        == {"strom_disk_free_bytes", "strom_disk_total_bytes"}
    assert names('histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{api="Produce"}[5m]))) offset 5m > 1e3') \
        == {"a_bucket"}
    assert names('count by (state) (b{state="Stable"}) or vector(0)') == {"b"}
    assert names('absent(up{job=~".*strom.*"})') == {"up"}


def test_a_misspelt_dashboard_metric_is_reported(tmp_path):
    """The check itself can fail: the dashboard with one name changed, against a scrape that
    has every other, names the changed one."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = lint_dashboard.dashboard_exprs(dash)
    everything = set().union(*(lint_dashboard.metric_names(e) for _, e in exprs))
    assert lint_dashboard.unknown_metrics(exprs, everything) == []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            t["expr"] = t["expr"].replace("strom_topic_records_in_total", "strom_topic_messages_in_total")
    problems = lint_dashboard.unknown_metrics(lint_dashboard.dashboard_exprs(dash), everything)
    assert problems and all("strom_topic_messages_in_total" in p for p in problems), problems
    # And so does the command line, which k8s-validate.sh-style scripts can run.
    scrape = tmp_path / "scrape.txt"
    scrape.write_text("".join(f"{n} 1\n" for n in sorted(everything)))
    broken = tmp_path / "dash.json"
    broken.write_text(json.dumps(dash))
    assert lint_dashboard.main(["--metrics", str(scrape), str(DASHBOARD)]) == 0
    assert lint_dashboard.main(["--metrics", str(scrape), str(broken)]) == 1


def test_every_metric_the_dashboard_and_rules_name_is_exported(make_broker):
    scrape = scrape_after_traffic(make_broker)
    exported = lint_dashboard.exported_names(scrape)
    exprs = lint_dashboard.dashboard_exprs(json.loads(DASHBOARD.read_text())) + rule_exprs()
    assert len(exprs) > 40, exprs
    problems = lint_dashboard.unknown_metrics(exprs, exported)
    assert not problems, "\n".join(problems)


def test_docs_list_exactly_the_families_metrics_exports(make_broker):
    scrape = scrape_after_traffic(make_broker)
    exported = families(scrape)
    docs = documented()
    strom = {name: kind for name, kind in exported.items() if name.startswith("strom_")}
    assert set(exported) == set(strom), f"outside the strom_ namespace: {sorted(set(exported) - set(strom))}"
    undocumented = sorted(set(strom) - set(docs))
    assert not undocumented, f"exported, not in docs/metrics.md: {undocumented}"
    missing = sorted(set(docs) - set(strom) - set(ONLY_AFTER_AN_EVENT))
    assert not missing, f"in docs/metrics.md, not exported: {missing}"
    stale = sorted(n for n in ONLY_AFTER_AN_EVENT if n in strom)
    assert not stale, f"exported without their event, drop them from ONLY_AFTER_AN_EVENT: {stale}"
    wrong = sorted((n, docs[n], kind) for n, kind in strom.items() if docs[n] != kind)
    assert not wrong, f"documented with another type (name, docs, /metrics): {wrong}"
