#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker and rule unit-test runner) from
# the Go module proxy into a cache outside the work tree, only when missing,
# and prints its path (make test sets PROMTOOL to it).
#
#   PROMTOOL=$(hack/promtool.sh)
set -euo pipefail

PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}   # Prometheus 3.x, Go module version
OUT=${EIPLB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/eiplb/tools}
BIN=$OUT/promtool-$PROMETHEUS_VERSION
if [ ! -x "$BIN" ]; then
  mkdir -p "$OUT"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "promtool: building github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION (about 2 min, once)" >&2
  GOBIN=$tmp GOFLAGS=-mod=mod go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
  mv "$tmp/promtool" "$BIN"
fi
echo "$BIN"
