#!/usr/bin/env bash
# Checks that the release's version numbers agree, and prints them for the release workflow:
# the workspace version (Cargo.toml), the chart's appVersion, the manifests' image tag, and,
# when given, the git tag (vX.Y.Z). The image name is the chart's image.repository.
#
#   scripts/release-versions.sh [TAG]     prints version=… and image=… lines; exit 1 on a mismatch
set -euo pipefail
cd "$(dirname "$0")/.."

crate=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/strom/Chart.yaml)
image=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' deploy/helm/strom/values.yaml)
manifest=$(sed -n 's/^ *image: *//p' deploy/kubernetes/02-statefulset.yaml)
version=${1:-$crate}
version=${version#v}

bad=0
complain() { printf 'release-versions: %s\n' "$*" >&2; bad=1; }
[ -n "$image" ] || complain "deploy/helm/strom/values.yaml has no image.repository"
[ "$crate" = "$version" ] || complain "Cargo.toml version $crate is not the tag's $version"
[ "$app" = "$version" ] || complain "the chart's appVersion $app is not $version"
[ "$manifest" = "$image:$version" ] || complain "deploy/kubernetes uses image $manifest, not $image:$version"
[ "$bad" -eq 0 ] || exit 1
printf 'version=%s\nimage=%s\n' "$version" "$image"
