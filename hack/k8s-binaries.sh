#!/usr/bin/env bash
# Builds the envtest binaries (etcd, kube-apiserver), the node and control
# plane parts the lab runs (kube-proxy, kube-controller-manager) and, with
# WITH_KUBECTL=1, kubectl, with WITH_NODE=1 what the cluster lab adds (kubelet,
# kube-scheduler, kubectl and the CNI plugins bridge, host-local, loopback,
# portmap) from the Go module proxy into a cache outside the work tree, only
# when missing, and prints the folder (use it as KUBEBUILDER_ASSETS).
#
#   KUBEBUILDER_ASSETS=$(hack/k8s-binaries.sh)
#
# A fresh machine pays about 10 minutes once (2 cores): kube-apiserver about
# 4, kube-proxy and kube-controller-manager a few more (they share most of
# its packages in the Go build cache). Concurrent runs wait for each other
# (a lock in the folder) instead of building the same binary twice.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
CNI_VERSION=${CNI_VERSION:-1.10.0}
OUT=${EIPLB_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/eiplb/k8s/$K8S_VERSION}
mkdir -p "$OUT"
log() { echo "k8s-binaries: $*" >&2; }
exec 9>"$OUT/.lock"
flock 9

build_etcd() {
  local d; d=$(mktemp -d)
  log "building etcd v$ETCD_VERSION (about 40 s)"
  ( cd "$d" && go mod init etcdb >/dev/null 2>&1
    printf '//go:build tools\npackage tools\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1
    go build -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 ) >&2
  mv "$OUT/etcd.tmp" "$OUT/etcd"; rm -rf "$d"
}

# k8s.io/kubernetes requires its staging modules at v0.0.0 with replace
# directives, which `go install` refuses: build from a throwaway module that
# pins each staging module to the published version.
k8s_module() {
  local d=$1 gm
  gm=$(cd "$d" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  { echo "module kbins"; echo "go 1.26"; echo "require k8s.io/kubernetes v$K8S_VERSION"
    grep -E '=> ./staging' "$gm" | awk '{print $1}' | sed 's/^replace//' | while read -r m; do
      [ -n "$m" ] && echo "replace $m => $m v0.${K8S_VERSION#1.}"; done; } > "$d/go.mod"
}

# build_k8s builds the commands k8s.io/kubernetes/cmd/<name> for each name
# given, in one `go build` (they share most packages).
build_k8s() {
  local d name pkgs=() imports=""; d=$(mktemp -d)
  for name in "$@"; do
    pkgs+=("k8s.io/kubernetes/cmd/$name")
    imports+="import _ \"k8s.io/kubernetes/cmd/$name\"\n"
  done
  log "building $* v$K8S_VERSION (kube-apiserver alone takes about 4 min)"
  k8s_module "$d"
  printf "//go:build tools\npackage tools\n$imports" > "$d/tools.go"
  mkdir "$d/out"
  ( cd "$d" && go mod tidy >/dev/null 2>&1 && go build -o "$d/out/" "${pkgs[@]}" ) >&2
  for name in "$@"; do mv "$d/out/$name" "$OUT/$name.tmp" && mv "$OUT/$name.tmp" "$OUT/$name"; done
  rm -rf "$d"
}

# build_cni builds the CNI plugins the cluster lab's pods use into $OUT/cni.
build_cni() {
  local d; d=$(mktemp -d)
  log "building CNI plugins v$CNI_VERSION (about 1 min)"
  ( cd "$d" && go mod init cnib >/dev/null 2>&1
    printf '//go:build tools\npackage tools\nimport (\n_ "github.com/containernetworking/plugins/plugins/main/bridge"\n_ "github.com/containernetworking/plugins/plugins/ipam/host-local"\n_ "github.com/containernetworking/plugins/plugins/main/loopback"\n_ "github.com/containernetworking/plugins/plugins/meta/portmap"\n)\n' > tools.go
    go get "github.com/containernetworking/plugins@v$CNI_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1
    mkdir out && CGO_ENABLED=0 go build -o out/ github.com/containernetworking/plugins/plugins/main/bridge \
      github.com/containernetworking/plugins/plugins/ipam/host-local \
      github.com/containernetworking/plugins/plugins/main/loopback \
      github.com/containernetworking/plugins/plugins/meta/portmap ) >&2
  rm -rf "$OUT/cni.tmp" && mv "$d/out" "$OUT/cni.tmp" && rm -rf "$OUT/cni" && mv "$OUT/cni.tmp" "$OUT/cni"
  rm -rf "$d"
}

[ -x "$OUT/etcd" ] || build_etcd
[ -x "$OUT/kube-apiserver" ] || build_k8s kube-apiserver
# The lab runs a real EndpointSlice controller and kube-proxy on every node
# (docs/lab.md), so every lab test needs them.
missing=()
for name in kube-proxy kube-controller-manager; do
  [ -x "$OUT/$name" ] || missing+=("$name")
done
if [ "${WITH_KUBECTL:-0}" = 1 ] || [ "${WITH_NODE:-0}" = 1 ]; then
  [ -x "$OUT/kubectl" ] || missing+=(kubectl)
fi
if [ "${WITH_NODE:-0}" = 1 ]; then
  for name in kubelet kube-scheduler; do
    [ -x "$OUT/$name" ] || missing+=("$name")
  done
  [ -x "$OUT/cni/portmap" ] || build_cni
fi
[ ${#missing[@]} = 0 ] || build_k8s "${missing[@]}"
echo "$OUT"
