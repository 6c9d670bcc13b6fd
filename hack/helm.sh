#!/usr/bin/env bash
# Prints the path of helm, built once from the Go module proxy (make test
# sets HELM, to render deploy/helm/eiplb and check it against an API server).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/go-tool.sh" helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION:-v3.22.0}"
