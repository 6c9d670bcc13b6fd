#!/usr/bin/env bash
# Builds a Go command from the module proxy into a cache outside the work
# tree, only when missing, and prints its path.
#
#   hack/go-tool.sh NAME PACKAGE VERSION     e.g. promtool github.com/prometheus/prometheus/cmd/promtool v0.316.0
set -euo pipefail

NAME=$1 PKG=$2 VERSION=$3
OUT=${EIPLB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/eiplb/tools}
BIN=$OUT/$NAME-$VERSION
if [ ! -x "$BIN" ]; then
  mkdir -p "$OUT"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "$NAME: building $PKG@$VERSION (a few minutes, once)" >&2
  GOBIN=$tmp GOFLAGS=-mod=mod go install "$PKG@$VERSION" >&2
  mv "$tmp/$(basename "$PKG")" "$BIN"
fi
echo "$BIN"
