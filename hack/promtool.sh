#!/usr/bin/env bash
# Prints the path of promtool (Prometheus' rule checker and rule unit-test
# runner), built once from the Go module proxy (make test sets PROMTOOL).
set -euo pipefail
# Prometheus 3.x as a Go module version.
exec "$(dirname "${BASH_SOURCE[0]}")/go-tool.sh" promtool github.com/prometheus/prometheus/cmd/promtool "${PROMETHEUS_VERSION:-v0.316.0}"
