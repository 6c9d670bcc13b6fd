#!/usr/bin/env bash
# Builds helm from the Go module proxy into a cache outside the work tree,
# only when missing, and prints its path (make test sets HELM to it, to
# render deploy/helm/eiplb and check it against a real API server).
#
#   HELM=$(hack/helm.sh)
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
OUT=${EIPLB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/eiplb/tools}
BIN=$OUT/helm-$HELM_VERSION
if [ ! -x "$BIN" ]; then
  mkdir -p "$OUT"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "helm: building helm.sh/helm/v3/cmd/helm@$HELM_VERSION (about 2 min, once)" >&2
  GOBIN=$tmp GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  mv "$tmp/helm" "$BIN"
fi
echo "$BIN"
