#!/usr/bin/env bash
# Fails when a package that must stay free of GoBGP links it. The kubectl
# plugin and the pure announcer use eiplb's BGP types (pkg/bgp/route); only
# the speaker (pkg/bgp) and the manager that runs it may import GoBGP.
set -euo pipefail
GO=${GO:-go}
pkgs=(./cmd/kubectl-eiplb ./pkg/announce)
forbidden='^github.com/osrg/gobgp'
bad=$("$GO" list -deps "${pkgs[@]}" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
	echo "verify-deps: ${pkgs[*]} must not link GoBGP; they depend on:" >&2
	echo "$bad" | sed 's/^/  /' >&2
	for p in "${pkgs[@]}"; do
		# One import chain per package, to show where GoBGP comes in.
		echo "  ($p imports: $("$GO" list -deps -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' "$p" | awk '$1 ~ /eiplb\/eiplb/ { for (i = 2; i <= NF; i++) if ($i ~ /gobgp|eiplb\/pkg\/bgp$/) { print $1; break } }' | tr '\n' ' '))" >&2
	done
	exit 1
fi
echo "verify-deps: ${pkgs[*]} link no GoBGP"
