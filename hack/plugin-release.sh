#!/usr/bin/env bash
# Builds the kubectl-eiplb release archives and the filled-in krew manifest:
#   OUT/kubectl-eiplb_<VERSION>_<os>_<arch>.tar.gz  (kubectl-eiplb + LICENSE)
#   OUT/eiplb.yaml                                  (deploy/krew/eiplb.yaml with version, URLs, sha256)
# Usage: VERSION=v0.1.0 RELEASE_URL=https://host/path hack/plugin-release.sh [OUT]
# PLATFORMS (default "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64")
# narrows the build. Works offline (the Go module cache is enough). The
# archives are reproducible: fixed mtime, owner and order.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
version=${VERSION:?VERSION is required (the release tag, e.g. v0.1.0)}
url=${RELEASE_URL:-RELEASE_URL}
platforms=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
go=${GO:-go}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
manifest=$(grep -v '^#' deploy/krew/eiplb.yaml)
manifest=${manifest//'${VERSION}'/$version}
manifest=${manifest//'${RELEASE_URL}'/$url}
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	dir="$work/${os}_${arch}"
	mkdir -p "$dir"
	echo "plugin-release: building kubectl-eiplb for $os/$arch" >&2
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$go" build -trimpath \
		-ldflags "-s -w -X github.com/eiplb/eiplb/pkg/version.Version=$version" \
		-o "$dir/kubectl-eiplb" ./cmd/kubectl-eiplb
	cp LICENSE "$dir/LICENSE"
	archive="$out/kubectl-eiplb_${version}_${os}_${arch}.tar.gz"
	tar --sort=name --mtime='2000-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
		-C "$dir" -cf - kubectl-eiplb LICENSE | gzip -n -9 > "$archive"
	sum=$(sha256sum "$archive" | cut -d' ' -f1)
	manifest=${manifest//"\${SHA256_${os}_${arch}}"/$sum}
	echo "$archive $sum"
done
printf '%s\n' "$manifest" > "$out/eiplb.yaml"
echo "plugin-release: wrote $out/eiplb.yaml" >&2
