#!/usr/bin/env bash
# Installs the Debian packages the lab, the demo and the privileged tests
# need, only when one is missing: FRR and BIRD 2 as routers, iproute2,
# nftables, iptables (kube-proxy's iptables mode in the lab), procps
# (sysctl, ps, pgrep), ca-certificates (the Go module proxy), curl (trying
# the lab), make, git, python3, containerd and runc (the cluster lab's nodes,
# make e2e-cluster). The packages' own
# daemons are kept from starting on the host: the lab starts its routers
# inside network namespaces. Needs root when something is missing.
#
#   sudo hack/install-deps.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(ca-certificates curl make git python3 procps iproute2 nftables iptables frr bird2 containerd runc)

pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

packages_present() {
  local b p
  for b in curl make git python3 sysctl pgrep ps ip ss nft iptables-restore bird birdc vtysh containerd ctr runc containerd-shim-runc-v2 nsenter unshare; do
    command -v "$b" >/dev/null 2>&1 || return 1
  done
  [ -x /usr/lib/frr/bgpd ] && [ -x /usr/lib/frr/zebra ] || return 1
  for p in "${APT_PACKAGES[@]}"; do
    pkg_installed "$p" || return 1
  done
}

echo "install-deps: ${APT_PACKAGES[*]}"
if packages_present; then
  echo "all packages already installed, skipping apt-get"
else
  if [ "$(id -u)" != 0 ]; then
    echo "packages missing and not running as root: cannot apt-get install ${APT_PACKAGES[*]}" >&2
    exit 1
  fi
  # Keep the packages' daemons (frr, bird, containerd) from being started on the host:
  # tests start their own routers inside network namespaces.
  POLICY_RC=/usr/sbin/policy-rc.d
  ADDED_POLICY_RC=0
  if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
    chmod +x "$POLICY_RC"
    ADDED_POLICY_RC=1
  fi
  apt_rc=0
  { apt-get update && apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"; } || apt_rc=$?
  if [ "$ADDED_POLICY_RC" = 1 ]; then rm -f "$POLICY_RC"; fi
  if [ "$apt_rc" -ne 0 ]; then
    echo "apt-get failed (exit code $apt_rc)" >&2
    exit "$apt_rc"
  fi
fi

