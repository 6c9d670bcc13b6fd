#!/usr/bin/env bash
# Writes a release into DIST (make release): the install manifest, the
# alert rules, the packaged Helm chart and the kubectl plugin's archives
# with its krew manifest (hack/plugin-release.sh),
# all for the version of deploy/helm/eiplb/Chart.yaml (appVersion; the
# images are tagged "v" + appVersion). Offline: the Go build runs with
# GOPROXY=off and helm comes from $HELM or hack/helm.sh's cache.
#
#   hack/release.sh DIST "PLATFORMS"     e.g. hack/release.sh dist "linux/amd64 darwin/arm64"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIST=$1 PLATFORMS=$2
app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' deploy/helm/eiplb/Chart.yaml)
chart=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' deploy/helm/eiplb/Chart.yaml)
[ -n "$app" ] && [ -n "$chart" ] || { echo "release: no version/appVersion in deploy/helm/eiplb/Chart.yaml" >&2; exit 1; }
v=v$app

# The manifest must pull exactly this release's images.
for img in eiplb-manager eiplb-agent; do
  if ! grep -q "image: .*/$img:$v\$" deploy/eiplb.yaml; then
    echo "release: deploy/eiplb.yaml does not pull $img:$v (set newTag: $v in config/default/kustomization.yaml, then make manifests)" >&2
    exit 1
  fi
done
if grep -rn ':latest' deploy/eiplb.yaml deploy/helm/eiplb >/dev/null; then
  echo "release: :latest in deploy/" >&2; exit 1
fi

helm=${HELM:-}
if [ -z "$helm" ]; then helm=$(hack/helm.sh); fi

mkdir -p "$DIST"
cp deploy/eiplb.yaml "$DIST/eiplb-$v.yaml"
cp deploy/prometheus/alerts.yaml "$DIST/eiplb-alerts-$v.yaml"
"$helm" package deploy/helm/eiplb --destination "$DIST" >/dev/null
[ -f "$DIST/eiplb-$chart.tgz" ] || { echo "release: helm package wrote no $DIST/eiplb-$chart.tgz" >&2; exit 1; }

# The plugin's archives and its krew manifest (eiplb.yaml), built offline.
VERSION=$v PLATFORMS=$PLATFORMS GOPROXY=off GOFLAGS=-mod=readonly hack/plugin-release.sh "$DIST" >/dev/null

(cd "$DIST" && rm -f SHA256SUMS && sha256sum -- * > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "release $v in $DIST:"
ls -1 "$DIST" | sed 's/^/  /'
