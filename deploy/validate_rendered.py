"""Checks rendered Strom manifests for what schema validation cannot see.

kubernetes-validate proves each object is well-formed; this proves the
objects agree with each other and with Strom's configuration contract: the
listeners name the container's ports, every ${env:NAME} placeholder has its
env var, each Service selects the broker pods, each external NodePort is the
one its broker advertises, and so on.

    python deploy/validate_rendered.py RENDERED.yaml...
    python deploy/validate_rendered.py --same A.yaml B.yaml

The second form checks that two renders describe the same objects (the plain
manifests and the chart's defaults), ignoring what only says who rendered them.

Called by scripts/k8s-validate.sh; needs PyYAML (a kubernetes-validate
dependency).
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

RECOMMENDED_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
]
# Labels that only say which tool rendered the object.
TOOL_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
VALID_PLACEHOLDER = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|ordinal|ordinal:[0-9]+)$")
LISTENER = re.compile(r"^([A-Z][A-Z0-9_]*)://(.*):([0-9]+|\$\{ordinal:[0-9]+\})$")
DATA_MOUNT = "/var/lib/strom"


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.items.append(message)


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not (isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
                and d.get("metadata", {}).get("name")):
            raise SystemExit(f"{path}: a document is not a Kubernetes object: {str(d)[:200]}")
    return docs


def parse_listeners(value: str) -> dict[str, tuple[str, str]]:
    out = {}
    for part in value.split(","):
        m = LISTENER.match(part.strip())
        if not m:
            raise ValueError(f"not NAME://HOST:PORT: {part!r}")
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_render(path: str) -> list[str]:
    p = Problems(path)
    docs = load(path)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        if d["kind"] != "Namespace":
            labels = d["metadata"].get("labels", {})
            missing = [k for k in RECOMMENDED_LABELS if k not in labels]
            p.check(not missing, f"{d['kind']}/{d['metadata']['name']} lacks labels {missing}")

    sts_list = by_kind.get("StatefulSet", [])
    p.check(len(sts_list) == 1, f"expected one StatefulSet, found {len(sts_list)}")
    if len(sts_list) != 1:
        return p.items
    sts = sts_list[0]
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    p.check(spec.get("replicas", 1) <= 1, "replicas > 1, but Strom clustering is not implemented yet")
    p.check(selects(spec["selector"]["matchLabels"], pod_labels), "StatefulSet selector does not match its pods")
    p.check(pod.get("enableServiceLinks") is False,
            "enableServiceLinks must be false (service links inject STROM_* variables)")
    p.check(pod.get("automountServiceAccountToken") is False, "the pod mounts an API token it never uses")

    psc = pod.get("securityContext", {})
    p.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532,
            "pod must run as non-root uid 65532")
    p.check("fsGroup" in psc, "pod needs an fsGroup so the data volume is writable")
    p.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccompProfile must be RuntimeDefault")

    containers = pod["containers"]
    p.check(len(containers) == 1, "expected one container")
    c = containers[0]
    csc = c.get("securityContext", {})
    p.check(csc.get("readOnlyRootFilesystem") is True, "root filesystem must be read-only")
    p.check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    p.check(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities must drop ALL")
    p.check(bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")),
            "resources need requests and limits")

    ports = {cp["name"]: cp["containerPort"] for cp in c.get("ports", [])}
    env_list = c.get("env", [])
    names = [e["name"] for e in env_list]
    dupes = sorted({n for n in names if names.count(n) > 1})
    p.check(not dupes, f"env vars set twice: {dupes}")
    env = {e["name"]: e for e in env_list}

    for var, field in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                       ("POD_IP", "status.podIP"), ("HOST_IP", "status.hostIP")]:
        got = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        p.check(got == field, f"{var} must come from the downward API field {field}, got {got}")

    values = {k: e.get("value") for k, e in env.items() if "value" in e}
    for k, v in values.items():
        if not k.startswith("STROM_"):
            continue
        p.check("$(" not in v, f"{k}: Kubernetes would expand the $(...) in {v!r}")
        for ph in PLACEHOLDER.findall(v):
            p.check(bool(VALID_PLACEHOLDER.match(ph)), f"{k}: unknown placeholder ${{{ph}}}")
            if ph.startswith("env:"):
                p.check(ph[4:] in env, f"{k}: ${{{ph}}} names an env var the container does not set")
        p.check(not re.search(r"[0-9]e\+[0-9]", v), f"{k}: number in float notation: {v!r}")

    required = ["STROM_NODE_ID", "STROM_LISTENERS", "STROM_ADVERTISED_LISTENERS",
                "STROM_LISTENER_SECURITY_PROTOCOL_MAP", "STROM_INTER_BROKER_LISTENER_NAME",
                "STROM_LOG_DIRS", "STROM_ADMIN_HTTP_LISTENER", "STROM_SHUTDOWN_TIMEOUT_MS"]
    missing = [k for k in required if k not in values]
    p.check(not missing, f"missing settings {missing}")
    if missing:
        return p.items

    p.check(values["STROM_NODE_ID"] == "${ordinal}", "node.id must be ${ordinal}")
    p.check(values["STROM_INTER_BROKER_LISTENER_NAME"] == "INTERNAL", "inter.broker.listener.name must be INTERNAL")
    p.check(values["STROM_LOG_DIRS"].startswith(DATA_MOUNT + "/"),
            f"log.dirs must be inside the data volume ({DATA_MOUNT})")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    p.check(mounts.get(DATA_MOUNT) == "data", f"the data volume must be mounted at {DATA_MOUNT}")
    p.check("/tmp" in mounts, "a read-only root needs a writable /tmp")
    claim_names = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    vol_names = [v["name"] for v in pod.get("volumes", [])]
    p.check("data" in claim_names or "data" in vol_names, "no volume named data")
    for m in mounts.values():
        p.check(m in claim_names or m in vol_names, f"volumeMount {m} has no volume")

    grace = pod.get("terminationGracePeriodSeconds", 30)
    p.check(int(values["STROM_SHUTDOWN_TIMEOUT_MS"]) < grace * 1000,
            "shutdown.timeout.ms must end before terminationGracePeriodSeconds")

    try:
        listeners = parse_listeners(values["STROM_LISTENERS"])
        advertised = parse_listeners(values["STROM_ADVERTISED_LISTENERS"])
    except ValueError as e:
        p.check(False, f"listeners: {e}")
        return p.items
    protocols = dict(x.split(":", 1) for x in values["STROM_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    p.check(set(listeners) == set(advertised) == set(protocols),
            f"listeners {sorted(listeners)}, advertised {sorted(advertised)} and protocol map "
            f"{sorted(protocols)} name different listeners")
    p.check({"INTERNAL", "LOCAL"} <= set(listeners), "INTERNAL and LOCAL listeners are required")

    kafka_port = ports.get("kafka")
    if "INTERNAL" in listeners:
        host, port = listeners["INTERNAL"]
        p.check(host == "${env:POD_IP}" and port == str(kafka_port),
                f"INTERNAL must bind ${{env:POD_IP}}:<kafka port {kafka_port}>, got {host}:{port}")
        ahost, aport = advertised["INTERNAL"]
        p.check(ahost.startswith(f"${{env:POD_NAME}}.{spec['serviceName']}.${{env:POD_NAMESPACE}}.svc."),
                f"INTERNAL must advertise the pod's name under the headless Service {spec['serviceName']}: {ahost}")
        p.check(aport == str(kafka_port), "INTERNAL advertises another port than it binds")
    if "LOCAL" in listeners:
        p.check(listeners["LOCAL"] == ("127.0.0.1", str(kafka_port)),
                f"LOCAL must bind 127.0.0.1:<kafka port>, where kubectl port-forward arrives: {listeners['LOCAL']}")
        p.check(advertised["LOCAL"] == ("localhost", str(kafka_port)),
                f"LOCAL must advertise localhost:<kafka port>: {advertised['LOCAL']}")
    external_base = None
    if "EXTERNAL" in listeners:
        p.check(listeners["EXTERNAL"] == ("0.0.0.0", str(ports.get("external"))),
                f"EXTERNAL must bind 0.0.0.0:<external port>: {listeners['EXTERNAL']}")
        m = re.fullmatch(r"\$\{ordinal:([0-9]+)\}", advertised["EXTERNAL"][1])
        external_base = int(m.group(1)) if m else None
    else:
        p.check("external" not in ports, "an external container port without an EXTERNAL listener")

    admin_port = ports.get("admin")
    p.check(values["STROM_ADMIN_HTTP_LISTENER"] == f"0.0.0.0:{admin_port}",
            "admin.http.listener must be 0.0.0.0:<admin port>")
    for probe, path in [("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
        get = c.get(probe, {}).get("httpGet", {})
        p.check(get.get("path") == path and get.get("port") == "admin", f"{probe} must GET {path} on port admin")
    ann = spec["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") == "true":
        p.check(ann.get("prometheus.io/port") == str(admin_port) and ann.get("prometheus.io/path") == "/metrics",
                "prometheus annotations must point at /metrics on the admin port")

    services = by_kind.get("Service", [])
    svc_names = {s["metadata"]["name"] for s in services}
    p.check(spec["serviceName"] in svc_names, f"the headless Service {spec['serviceName']} is missing")
    p.check(name in svc_names, f"the bootstrap Service {name} is missing")
    externals = 0
    for s in services:
        sname, sspec = s["metadata"]["name"], s["spec"]
        sel = dict(sspec.get("selector", {}))
        pod_name = sel.pop("statefulset.kubernetes.io/pod-name", None)
        p.check(selects(sel, pod_labels), f"Service {sname} does not select the broker pods")
        for sp in sspec["ports"]:
            tp = sp.get("targetPort")
            p.check(tp in ports, f"Service {sname} targets port {tp!r}, which the container does not name")
        if sname == spec["serviceName"]:
            p.check(sspec.get("clusterIP") == "None" and sspec.get("publishNotReadyAddresses") is True,
                    f"{sname} must be headless and publish not-ready addresses")
        if pod_name is not None:
            externals += 1
            m = re.fullmatch(re.escape(name) + r"-([0-9]+)", pod_name)
            p.check(bool(m), f"Service {sname} selects pod {pod_name}, not one of {name}'s")
            p.check(sspec["type"] in ("NodePort", "LoadBalancer"), f"{sname} is not reachable from outside")
            p.check("EXTERNAL" in listeners, f"{sname} exists, but there is no EXTERNAL listener")
            if m and sspec["type"] == "NodePort":
                want = None if external_base is None else external_base + int(m.group(1))
                got = sspec["ports"][0].get("nodePort")
                p.check(got == want, f"{sname}: nodePort {got}, but the broker advertises port {want}")
    if "EXTERNAL" in listeners:
        p.check(externals == spec.get("replicas", 1),
                f"{externals} external Services for {spec.get('replicas', 1)} brokers")

    check_monitoring(p, by_kind, pod_labels, ports, services)

    for pdb in by_kind.get("PodDisruptionBudget", []):
        p.check(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB does not select the brokers")
    for sa in by_kind.get("ServiceAccount", []):
        p.check(sa["metadata"]["name"] == pod.get("serviceAccountName"),
                f"ServiceAccount {sa['metadata']['name']} is not the one the pod uses")
    return p.items


# The Prometheus Operator's CRDs are not in kubernetes-validate's schemas: their
# objects are checked here against the fields of monitoring.coreos.com/v1 that
# the chart uses (a misspelt field would be dropped silently by the API server).
MONITORING_FIELDS = {
    "ServiceMonitor": {"jobLabel", "namespaceSelector", "selector", "endpoints"},
    "PodMonitor": {"jobLabel", "namespaceSelector", "selector", "podMetricsEndpoints"},
    "PrometheusRule": {"groups"},
}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout"}
DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")
RULES_FILE = "deploy/prometheus/strom-rules.yaml"


def check_monitoring(p: Problems, by_kind: dict[str, list[dict]], pod_labels: dict[str, str],
                     ports: Any, services: list[dict]) -> None:
    for kind, allowed in MONITORING_FIELDS.items():
        for obj in by_kind.get(kind, []):
            oname = f"{kind}/{obj['metadata']['name']}"
            p.check(obj["apiVersion"] == "monitoring.coreos.com/v1", f"{oname}: apiVersion {obj['apiVersion']}")
            spec = obj.get("spec", {})
            extra = set(spec) - allowed
            p.check(not extra, f"{oname}: unknown spec fields {sorted(extra)}")
            if kind == "PrometheusRule":
                with open(RULES_FILE, encoding="utf-8") as f:
                    want = yaml.safe_load(f)
                p.check(spec == want, f"{oname}: its groups differ from {RULES_FILE}")
                continue
            ns = obj["metadata"].get("namespace")
            p.check(spec.get("namespaceSelector", {}).get("matchNames") == [ns],
                    f"{oname}: must select its own namespace {ns}")
            sel = spec.get("selector", {}).get("matchLabels", {})
            endpoints = spec.get("endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints", [])
            p.check(len(endpoints) >= 1, f"{oname}: no endpoints")
            for ep in endpoints:
                extra = set(ep) - ENDPOINT_FIELDS
                p.check(not extra, f"{oname}: unknown endpoint fields {sorted(extra)}")
                p.check(ep.get("path") == "/metrics", f"{oname}: path {ep.get('path')!r}, not /metrics")
                for k in ("interval", "scrapeTimeout"):
                    if k in ep:
                        p.check(bool(DURATION.match(str(ep[k]))), f"{oname}: {k} {ep[k]!r} is not a duration")
            if kind == "PodMonitor":
                p.check(selects(sel, pod_labels), f"{oname} does not select the broker pods")
                for ep in endpoints:
                    p.check(ep.get("port") in ports, f"{oname}: port {ep.get('port')!r} is not a container port")
            else:
                targets = [s for s in services if selects(sel, s["metadata"].get("labels", {}))]
                p.check(len(targets) == 1, f"{oname} selects {len(targets)} Services, not one")
                for s in targets:
                    sspec = s["spec"]
                    p.check(sspec.get("clusterIP") == "None",
                            f"{oname}: Service {s['metadata']['name']} must be headless (one target per broker)")
                    names = {sp.get("name") for sp in sspec["ports"]}
                    for ep in endpoints:
                        p.check(ep.get("port") in names,
                                f"{oname}: port {ep.get('port')!r} is not a port of {s['metadata']['name']}")


def strip_tool_labels(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_tool_labels(v) for k, v in obj.items()
                if not (k in TOOL_LABELS and isinstance(v, str))}
    if isinstance(obj, list):
        return [strip_tool_labels(v) for v in obj]
    return obj


def diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'second' if k not in a else 'first'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def check_same(first: str, second: str) -> list[str]:
    def index(path: str) -> dict[tuple[str, str], Any]:
        return {(d["kind"], d["metadata"]["name"]): strip_tool_labels(d)
                for d in load(path) if d["kind"] != "Namespace"}
    a, b = index(first), index(second)
    out = [f"{k[0]}/{k[1]} only in {first}" for k in sorted(set(a) - set(b))]
    out += [f"{k[0]}/{k[1]} only in {second}" for k in sorted(set(b) - set(a))]
    for k in sorted(set(a) & set(b)):
        diff(a[k], b[k], f"{k[0]}/{k[1]}", out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--same":
        problems = check_same(argv[1], argv[2])
        label = f"{argv[1]} vs {argv[2]}"
        for line in problems:
            print(f"  {line}")
        print(f"{'FAIL' if problems else 'ok'}: same objects: {label}")
        return 1 if problems else 0
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    failed = 0
    for path in argv:
        problems = check_render(path)
        for line in problems:
            print(f"  {line}")
        print(f"{'FAIL' if problems else 'ok'}: contract checks: {path}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
