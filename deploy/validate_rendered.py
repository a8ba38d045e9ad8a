"""Checks rendered Strom manifests for what schema validation cannot see.

kubernetes-validate proves each object is well-formed; this proves the
objects agree with each other and with Strom's configuration contract: the
listeners name the container's ports, every ${env:NAME} placeholder has its
env var, each Service selects the broker pods, each external NodePort is the
one its broker advertises, and so on.

    python deploy/validate_rendered.py RENDERED.yaml...
    python deploy/validate_rendered.py --same A.yaml B.yaml
    python deploy/validate_rendered.py --mutations SECURE.yaml

The second form checks that two renders describe the same objects (the plain
manifests and the chart's defaults), ignoring what only says who rendered them.
The third proves the security checks can fail: it breaks a render that passes
(TLS, SASL, authorizer and the ACL bootstrap Job) in ways a chart bug could,
and each broken copy must be rejected with the expected problem.

Called by scripts/k8s-validate.sh; needs PyYAML (a kubernetes-validate
dependency).
"""

from __future__ import annotations

import copy
import os
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
        self.notes: list[str] = []

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
    return check_render_docs(path, load(path), NOTES)


NOTES: list[str] = []


def check_render_docs(path: str, docs: list[dict[str, Any]], notes: list[str] | None = None) -> list[str]:
    p = Problems(path)
    if notes is not None:
        p.notes = notes
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
    check_settings(p, c, env, listeners, protocols)
    check_security(p, by_kind, sts, c, env, protocols, services, pod_labels)

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
# authorization: the admin listener's bearer token (adminAuth), from a Secret only.
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "authorization"}
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
                auth = ep.get("authorization")
                if auth is not None:
                    creds = auth.get("credentials", {})
                    p.check(auth.get("type") == "Bearer" and set(creds) == {"name", "key"}
                            and all(isinstance(v, str) and v for v in creds.values()),
                            f"{oname}: authorization must be a Bearer token from a Secret's key, not {auth}")
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


# --- settings and security ---------------------------------------------------
#
# The broker's setting names are read from its source (the BROKER_CONFIGS
# table), so a name the chart writes that the broker does not know fails here,
# not at pod start-up. The broker maps STROM_<NAME> back to a setting by
# upper-casing the name and turning dots into underscores (RawConfig::merge_env).
BROKER_CONFIG_RS = "crates/broker/src/config.rs"
DEF_NAME = re.compile(r'^\s*def\("([a-z0-9._-]+)"', re.M)
# Settings the chart may write before the broker defines them (a branch not yet merged):
# none now that the security work is in. An entry found in BROKER_CONFIG_RS is reported, so
# it can be removed.
BRANCH_ONLY_SETTINGS: dict[str, str] = {}
# STROM_* variables that are not broker settings.
NON_SETTING_ENV = {"STROM_LOG"}
# listener.name.<l>.<mechanism>.sasl.jaas.config mechanisms the broker reads.
JAAS_MECHANISMS = {"plain", "scram-sha-256", "scram-sha-512", "oauthbearer"}
PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# Settings whose values are credentials: they must reach the pod from a Secret.
SECRET_SETTINGS = re.compile(r"(sasl\.jaas\.config|password|^(gateway\.)?ssl\.keystore\.key$)")
# What a credential looks like in text (for ConfigMaps and plain env values).
SECRET_TEXT = re.compile(r"(PRIVATE KEY-----|LoginModule|\buser_[A-Za-z0-9_.-]+\s*=|password\s*=)", re.I)
CERT_MANAGER_FIELDS = {"secretName", "additionalOutputFormats", "duration", "renewBefore", "privateKey",
                       "usages", "dnsNames", "issuerRef", "commonName", "ipAddresses", "subject"}


def broker_settings() -> set[str]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", BROKER_CONFIG_RS)
    try:
        with open(path, encoding="utf-8") as f:
            names = set(DEF_NAME.findall(f.read()))
    except OSError as e:
        raise SystemExit(f"cannot read the broker's settings: {e}")
    if "listeners" not in names:
        raise SystemExit(f"{BROKER_CONFIG_RS}: no def(\"listeners\", ...): has the table moved?")
    return names


def setting_of_env(var: str, known: set[str]) -> str | None:
    suffix = var[len("STROM_"):]
    for name in known:
        if name.upper().replace(".", "_") == suffix:
            return name
    return None


def broker_overrides(c: dict) -> tuple[list[tuple[str, str]], list[str]]:
    """The container's --override KEY=VALUE pairs, and any args that are not such pairs."""
    args = list(c.get("args", []))
    pairs, stray = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--override", "-o") and i + 1 < len(args) and "=" in args[i + 1]:
            k, v = args[i + 1].split("=", 1)
            pairs.append((k, v))
            i += 2
        elif a.startswith("--override=") and "=" in a[len("--override="):]:
            k, v = a[len("--override="):].split("=", 1)
            pairs.append((k, v))
            i += 1
        else:
            stray.append(a)
            i += 1
    return pairs, stray


def check_settings(p: Problems, c: dict, env: dict[str, dict], listeners: dict, protocols: dict) -> None:
    known = broker_settings()
    for name, branch in sorted(BRANCH_ONLY_SETTINGS.items()):
        if name in known:
            p.notes.append(f"{name} is in {BROKER_CONFIG_RS} now; drop it from BRANCH_ONLY_SETTINGS ({branch})")
    every = known | set(BRANCH_ONLY_SETTINGS)
    used_branch_only = set()
    for var in env:
        if not var.startswith("STROM_") or var in NON_SETTING_ENV:
            continue
        name = setting_of_env(var, every)
        p.check(name is not None, f"{var} names no broker setting (the broker would only warn and ignore it)")
        if name in BRANCH_ONLY_SETTINGS and name not in known:
            used_branch_only.add(name)
    pairs, stray = broker_overrides(c)
    p.check(not stray, f"broker args other than --override KEY=VALUE: {stray}")
    lower = {n.lower() for n in listeners}
    for k, v in pairs:
        m = re.fullmatch(r"listener\.name\.([a-z0-9_]+)\.(.+)", k)
        if m:
            p.check(m.group(1) in lower, f"--override {k}: no listener named {m.group(1).upper()}")
            rest = m.group(2)
            if rest.endswith(".sasl.jaas.config"):
                p.check(rest[: -len(".sasl.jaas.config")] in JAAS_MECHANISMS, f"--override {k}: unknown mechanism")
                p.check(protocols.get(m.group(1).upper(), "").startswith("SASL_"),
                        f"--override {k}: listener {m.group(1).upper()} is not SASL_*")
            else:
                p.check(rest.startswith(("ssl.", "sasl.")) and rest in every, f"--override {k}: unknown setting")
        else:
            p.check(k in every, f"--override {k}: unknown setting")
        for ph in PLACEHOLDER.findall(v):
            p.check(bool(VALID_PLACEHOLDER.match(ph)), f"--override {k}: unknown placeholder ${{{ph}}}")
            if ph.startswith("env:"):
                p.check(ph[4:] in env, f"--override {k}: ${{{ph}}} names an env var the container does not set")
    if used_branch_only:
        p.notes.append("settings known only on the security branches so far: "
                       + ", ".join(f"{n} ({BRANCH_ONLY_SETTINGS[n]})" for n in sorted(used_branch_only)))


def secret_ref(e: dict) -> dict | None:
    return e.get("valueFrom", {}).get("secretKeyRef")


def check_security(p: Problems, by_kind: dict[str, list[dict]], sts: dict, c: dict, env: dict[str, dict],
                   protocols: dict[str, str], services: list[dict], pod_labels: dict[str, str]) -> None:
    pod = sts["spec"]["template"]["spec"]
    values = {k: e.get("value") for k, e in env.items() if "value" in e}
    for k, pr in protocols.items():
        p.check(pr in PROTOCOLS, f"listener {k}: unknown security protocol {pr}")
    pairs, _ = broker_overrides(c)
    overrides = dict(pairs)

    # Credentials never in the pod spec as text: only from Secrets.
    known = broker_settings() | set(BRANCH_ONLY_SETTINGS)
    for var, e in env.items():
        name = setting_of_env(var, known) if var.startswith("STROM_") else None
        if name and SECRET_SETTINGS.search(name):
            p.check(secret_ref(e) is not None, f"{var} ({name}) is a credential but not from a secretKeyRef")
        if "value" in e:
            p.check(not SECRET_TEXT.search(str(e["value"])), f"{var}: its value looks like a credential")
    for k, v in overrides.items():
        if SECRET_SETTINGS.search(k):
            m = re.fullmatch(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", v)
            p.check(bool(m), f"--override {k}: a credential must be only an ${{env:NAME}} placeholder")
            if m and m.group(1) in env:
                p.check(secret_ref(env[m.group(1)]) is not None,
                        f"--override {k}: {m.group(1)} does not come from a secretKeyRef")
        p.check(not SECRET_TEXT.search(v), f"--override {k}: its value looks like a credential")
    for cm in by_kind.get("ConfigMap", []):
        for key, text in (cm.get("data") or {}).items():
            p.check(not SECRET_TEXT.search(str(text)) and not re.search(r"sasl\.jaas\.config", str(text)),
                    f"ConfigMap/{cm['metadata']['name']}: {key} holds credentials; they belong in a Secret")
    p.check(not by_kind.get("Secret"), "the chart renders a Secret: credentials must come from existing ones")

    # TLS: the keystore and truststore are files of a Secret mounted read-only, whole.
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tls_secret = None
    uses_tls = any(pr in ("SSL", "SASL_SSL") for pr in protocols.values())
    has_keystore = any(k in values for k in ("STROM_SSL_KEYSTORE_LOCATION",)) or (
        "STROM_SSL_KEYSTORE_KEY" in env and "STROM_SSL_KEYSTORE_CERTIFICATE_CHAIN" in env)
    p.check(has_keystore == uses_tls,
            f"TLS listeners: {uses_tls}, but a keystore is {'set' if has_keystore else 'missing'}")
    for var in ("STROM_SSL_KEYSTORE_LOCATION", "STROM_SSL_TRUSTSTORE_LOCATION"):
        if var not in values:
            continue
        path = values[var]
        directory, _, key = path.rpartition("/")
        m = mounts.get(directory)
        p.check(m is not None, f"{var}={path}: {directory} is not a mount")
        if m is None:
            continue
        p.check(m.get("readOnly") is True, f"{directory} must be mounted read-only")
        p.check("subPath" not in m, f"{directory}: a subPath mount is never updated when the secret rotates")
        vol = volumes.get(m["name"], {})
        secret = vol.get("secret", {}).get("secretName")
        p.check(secret is not None, f"{var}: {directory} is not a Secret volume")
        tls_secret = secret or tls_secret
        mode = vol.get("secret", {}).get("defaultMode", 0o644)
        p.check(mode & 0o007 == 0, f"{directory}: the key is readable by others (defaultMode {oct(mode)})")
        p.check(not vol.get("secret", {}).get("items"), f"{directory}: items would hide the keys the broker reads")
        if var == "STROM_SSL_KEYSTORE_LOCATION":
            p.check(values.get("STROM_SSL_KEYSTORE_TYPE", "PEM") == "PEM", "ssl.keystore.type must be PEM")
            for cert in by_kind.get("Certificate", []):
                if cert["spec"].get("secretName") == secret:
                    formats = [f.get("type") for f in cert["spec"].get("additionalOutputFormats", [])]
                    p.check(key != "tls-combined.pem" or "CombinedPEM" in formats,
                            f"Certificate/{cert['metadata']['name']} does not write {key} (CombinedPEM)")
    auth = values.get("STROM_SSL_CLIENT_AUTH", "none")
    p.check(auth in ("none", "requested", "required"), f"ssl.client.auth {auth!r}")
    p.check((auth != "none") <= ("STROM_SSL_TRUSTSTORE_LOCATION" in values),
            "client certificates requested without a truststore (ssl.truststore.location)")
    for cert in by_kind.get("Certificate", []):
        cname = f"Certificate/{cert['metadata']['name']}"
        p.check(cert["apiVersion"] == "cert-manager.io/v1", f"{cname}: apiVersion {cert['apiVersion']}")
        extra = set(cert.get("spec", {})) - CERT_MANAGER_FIELDS
        p.check(not extra, f"{cname}: unknown spec fields {sorted(extra)}")
        p.check(cert["spec"].get("secretName") == tls_secret,
                f"{cname} writes {cert['spec'].get('secretName')}, but the broker mounts {tls_secret}")
        p.check(bool(cert["spec"].get("dnsNames")) and bool(cert["spec"].get("issuerRef", {}).get("name")),
                f"{cname} needs dnsNames and an issuerRef")

    # SASL: mechanisms set, and PLAIN users on every SASL listener.
    sasl_listeners = [n for n, pr in protocols.items() if pr.startswith("SASL_")]
    mechs = [x.strip() for x in values.get("STROM_SASL_ENABLED_MECHANISMS", "").split(",") if x.strip()]
    p.check(bool(mechs) == bool(sasl_listeners),
            f"SASL listeners {sasl_listeners}, but sasl.enabled.mechanisms is {mechs}")
    if "PLAIN" in mechs:
        for n in sasl_listeners:
            p.check(f"listener.name.{n.lower()}.plain.sasl.jaas.config" in overrides,
                    f"PLAIN is enabled, but listener {n} has no PLAIN users (its jaas config)")

    # Authorization: Kafka's StandardAuthorizer, with a super user to bootstrap ACLs.
    if "STROM_AUTHORIZER_CLASS_NAME" in values:
        p.check(values["STROM_AUTHORIZER_CLASS_NAME"] == STANDARD_AUTHORIZER,
                f"authorizer.class.name must be {STANDARD_AUTHORIZER}")
        supers = [x for x in values.get("STROM_SUPER_USERS", "").split(";") if x]
        p.check(bool(supers) and all(re.fullmatch(r"[A-Za-z]+:.+", x) for x in supers),
                f"super.users {supers!r}: principals like User:admin, separated by ';'")

    secured = bool(mechs) or uses_tls or "STROM_AUTHORIZER_CLASS_NAME" in values
    # The in-process HTTP gateway (on unless gateway.listener is empty) is no way around the
    # secured listeners: it authenticates its callers, serves HTTPS where the listeners have
    # TLS, and with ACLs on reaches the broker as a principal of its own client properties.
    if secured and values.get("STROM_GATEWAY_LISTENER", "0.0.0.0:8082") != "":
        authorizer = "STROM_AUTHORIZER_CLASS_NAME" in values
        auth = values.get("STROM_GATEWAY_AUTHENTICATION", "basic" if authorizer else "none")
        p.check(auth.strip().lower() not in ("", "none"),
                "a secured broker's HTTP gateway must authenticate its callers (gateway.authentication not none)")
        if uses_tls:
            p.check("STROM_GATEWAY_SSL_KEYSTORE_LOCATION" in values
                    or "STROM_GATEWAY_SSL_KEYSTORE_CERTIFICATE_CHAIN" in env,
                    "a secured broker's HTTP gateway must serve HTTPS (gateway.ssl.keystore.*) as its listeners use TLS")
        if authorizer:
            cc = values.get("STROM_GATEWAY_CLIENT_CONFIG", "")
            mounted = any(cc.startswith(m.rstrip("/") + "/") and volumes.get(mm.get("name"), {}).get("secret")
                          for m, mm in mounts.items())
            p.check(mounted, "the HTTP gateway's own connection needs gateway.client.config, a file of a mounted "
                             "Secret (a super user's client properties)")

    jobs = by_kind.get("Job", [])
    if jobs:
        check_bootstrap_jobs(p, jobs, services, pod_labels, "STROM_AUTHORIZER_CLASS_NAME" in values, mechs)


def check_bootstrap_jobs(p: Problems, jobs: list[dict], services: list[dict], pod_labels: dict[str, str],
                         authorizer: bool, mechs: list[str]) -> None:
    svc_ports = {s["metadata"]["name"]: {sp["port"] for sp in s["spec"]["ports"]} for s in services}
    for job in jobs:
        jname = f"Job/{job['metadata']['name']}"
        hooks = set(job["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(","))
        p.check({"post-install", "post-upgrade"} <= hooks, f"{jname}: not a post-install/post-upgrade hook")
        tpl = job["spec"]["template"]
        jlabels = tpl["metadata"].get("labels", {})
        for s in services:
            sel = {k: v for k, v in s["spec"].get("selector", {}).items() if k != "statefulset.kubernetes.io/pod-name"}
            p.check(not selects(sel, jlabels), f"{jname}: Service {s['metadata']['name']} selects its pod")
        p.check(not selects(pod_labels, jlabels), f"{jname}: its pod carries the brokers' labels")
        spec = tpl["spec"]
        p.check(spec.get("restartPolicy") in ("Never", "OnFailure"), f"{jname}: restartPolicy")
        p.check(spec.get("automountServiceAccountToken") is False, f"{jname}: mounts an API token it never uses")
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for ct in spec.get("initContainers", []) + spec.get("containers", []):
            cname = f"{jname} container {ct['name']}"
            args = ct.get("args", [])
            p.check(ct.get("command") == ["/strom"] and args[:1] in (["acl"], ["user"]),
                    f"{cname}: not a strom acl/user command")
            if args[:2] == ["acl", "create"]:
                p.check(authorizer, f"{cname}: ACLs without an authorizer are never checked")
            if args[:2] == ["user", "create"]:
                mech = args[args.index("--mechanism") + 1] if "--mechanism" in args else "SCRAM-SHA-256"
                p.check(mech in mechs, f"{cname}: {mech} is not in sasl.enabled.mechanisms {mechs}")
                e = {x["name"]: x for x in ct.get("env", [])}
                p.check("--password" not in args and secret_ref(e.get("STROM_USER_PASSWORD", {})) is not None,
                        f"{cname}: the password must come from a secretKeyRef (STROM_USER_PASSWORD)")
            for e in ct.get("env", []):
                if "value" in e:
                    p.check(not SECRET_TEXT.search(str(e["value"])), f"{cname}: env {e['name']} looks like a credential")
            p.check("-b" in args, f"{cname}: no bootstrap (-b)")
            if "-b" in args:
                host, _, port = args[args.index("-b") + 1].rpartition(":")
                svc = host.split(".")[0]
                p.check(svc in svc_ports and port.isdigit() and int(port) in svc_ports[svc],
                        f"{cname}: bootstrap {host}:{port} is not a port of a rendered Service")
            p.check("--command-config" in args, f"{cname}: no --command-config (a super user's client properties)")
            if "--command-config" in args:
                path = args[args.index("--command-config") + 1]
                directory = path.rpartition("/")[0]
                m = next((m for m in ct.get("volumeMounts", []) if m["mountPath"] == directory), None)
                p.check(m is not None and m.get("readOnly") is True
                        and "secret" in vols.get(m["name"], {}),
                        f"{cname}: --command-config {path} is not in a read-only Secret mount")


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


def _broker(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def _env(docs: list[dict]) -> list[dict]:
    return _broker(docs)["env"]


def _set_env(docs: list[dict], name: str, entry: dict) -> None:
    env = _env(docs)
    env[:] = [e for e in env if e["name"] != name] + [dict(entry, name=name)]


def _job_container(docs: list[dict], prefix: str) -> dict:
    job = next(d for d in docs if d["kind"] == "Job")
    spec = job["spec"]["template"]["spec"]
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"].startswith(prefix))


# (what is broken, the problem expected, how)
MUTATIONS = [
    ("a misspelt setting", "names no broker setting",
     lambda d: _set_env(d, "STROM_SSL_KEYSTORE_LOCATON", {"value": "/x"})),
    ("a setting only Kafka's JVM knows", "names no broker setting",
     lambda d: _set_env(d, "STROM_SSL_KEYSTORE_PASSWORD", {"value": "x"})),
    ("the private key as plain text", "is a credential but not from a secretKeyRef",
     lambda d: _set_env(d, "STROM_SSL_KEYSTORE_KEY", {"value": "k"})),
    ("a JAAS entry in an --override", "must be only an ${env:NAME} placeholder",
     lambda d: _broker(d)["args"].__setitem__(1, 'listener.name.internal.plain.sasl.jaas.config='
                                              'org.apache.kafka.common.security.plain.PlainLoginModule '
                                              'required user_alice="secret";')),
    ("the JAAS env var as a value", "does not come from a secretKeyRef",
     lambda d: _set_env(d, "SASL_PLAIN_JAAS_CONFIG", {"value": "${env:X}"})),
    ("an override for a listener that does not exist", "no listener named OUTSIDE",
     lambda d: _broker(d)["args"].extend(["--override", "listener.name.outside.plain.sasl.jaas.config=${env:SASL_PLAIN_JAAS_CONFIG}"])),
    ("a SASL listener without PLAIN users", "has no PLAIN users",
     lambda d: _broker(d).__setitem__("args", _broker(d)["args"][2:])),
    ("credentials in a ConfigMap", "holds credentials",
     lambda d: d.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strom-users"},
                         "data": {"jaas": 'PlainLoginModule required user_admin="admin-secret";'}})),
    ("a rendered Secret", "renders a Secret",
     lambda d: d.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "YQ=="}})),
    ("the keystore through a subPath mount", "subPath mount is never updated",
     lambda d: next(m for m in _broker(d)["volumeMounts"] if m["name"] == "tls").__setitem__("subPath", "tls.crt")),
    ("a writable keystore mount", "must be mounted read-only",
     lambda d: next(m for m in _broker(d)["volumeMounts"] if m["name"] == "tls").pop("readOnly")),
    ("a world-readable key", "readable by others",
     lambda d: next(v for v in next(x for x in d if x["kind"] == "StatefulSet")["spec"]["template"]["spec"]["volumes"]
                    if v["name"] == "tls")["secret"].__setitem__("defaultMode", 0o644)),
    ("an SSL listener without a keystore", "a keystore is missing",
     lambda d: _env(d).__setitem__(slice(None), [e for e in _env(d) if e["name"] != "STROM_SSL_KEYSTORE_LOCATION"])),
    ("mTLS without a truststore", "without a truststore",
     lambda d: _env(d).__setitem__(slice(None), [e for e in _env(d) if e["name"] != "STROM_SSL_TRUSTSTORE_LOCATION"])),
    ("the HTTP gateway without authentication", "must authenticate its callers",
     lambda d: _set_env(d, "STROM_GATEWAY_AUTHENTICATION", {"value": "none"})),
    ("the HTTP gateway without HTTPS", "must serve HTTPS",
     lambda d: _env(d).__setitem__(slice(None), [e for e in _env(d)
                                                 if e["name"] != "STROM_GATEWAY_SSL_KEYSTORE_LOCATION"])),
    ("the HTTP gateway's client config not from a Secret", "needs gateway.client.config",
     lambda d: _set_env(d, "STROM_GATEWAY_CLIENT_CONFIG", {"value": "/tmp/command.properties"})),
    ("another authorizer", "authorizer.class.name must be",
     lambda d: _set_env(d, "STROM_AUTHORIZER_CLASS_NAME", {"value": "kafka.security.authorizer.AclAuthorizer"})),
    ("a SCRAM password in the Job's args", "must come from a secretKeyRef",
     lambda d: _job_container(d, "user-")["args"].extend(["--password", "hunter2"])),
    ("a Job without --command-config", "no --command-config",
     lambda d: _job_container(d, "acl-list").__setitem__("args", ["acl", "list", "-b", "strom:9092"])),
    ("a Job bootstrapping from a Service that is not there", "not a port of a rendered Service",
     lambda d: _job_container(d, "acl-list")["args"].__setitem__(3, "kafka.kafka.svc:9092")),
    ("a Job whose pod the brokers' Services select", "selects its pod",
     lambda d: next(x for x in d if x["kind"] == "Job")["spec"]["template"]["metadata"]["labels"].__setitem__(
         "app.kubernetes.io/component", "broker")),
]


def check_mutations(path: str) -> list[str]:
    base = load(path)
    out = [f"the unbroken render fails: {x}" for x in check_render_docs(path, base)]
    for what, expected, apply in MUTATIONS:
        docs = copy.deepcopy(base)
        apply(docs)
        problems = check_render_docs(f"{path} ({what})", docs)
        if not any(expected in x for x in problems):
            out.append(f"{what}: expected a problem with {expected!r}, got {problems}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--same":
        problems = check_same(argv[1], argv[2])
        label = f"{argv[1]} vs {argv[2]}"
        for line in problems:
            print(f"  {line}")
        print(f"{'FAIL' if problems else 'ok'}: same objects: {label}")
        return 1 if problems else 0
    if len(argv) == 2 and argv[0] == "--mutations":
        problems = check_mutations(argv[1])
        for line in problems:
            print(f"  {line}")
        print(f"{'FAIL' if problems else 'ok'}: {len(MUTATIONS)} broken copies of {argv[1]} rejected")
        return 1 if problems else 0
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    failed = 0
    for path in argv:
        problems = check_render(path)
        for line in sorted(set(NOTES)):
            print(f"  note: {line}")
        NOTES.clear()
        for line in problems:
            print(f"  {line}")
        print(f"{'FAIL' if problems else 'ok'}: contract checks: {path}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
