#!/usr/bin/env bash
# The local lab in the background: `make lab-up` / `make lab-down`.
#
#   hack/lab.sh up     build and start the lab (test/e2e/lab -keep), wait
#                      until it is ready, print what it shows; if it is
#                      running already, print that again (idempotent)
#   hack/lab.sh down   stop it, then remove whatever a crashed lab or test
#                      left behind (namespaces, routers, files, orphaned
#                      API servers); safe to run at any time
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAB_DIR=${LAB_DIR:-.lab}
PIDFILE=$LAB_DIR/lab.pid
GO=${GO:-go}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "lab: must run as root: the lab creates network namespaces and nftables rules (try: sudo make $1)" >&2
    exit 1
  fi
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

down() {
  need_root lab-down
  if running; then
    pid=$(cat "$PIDFILE")
    echo "lab: stopping the lab (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "lab: still running after 30 s, killing it" >&2; kill -KILL "$pid"; }
  fi
  # Leftovers of labs and tests whose process is gone (a lab of a running
  # test is left alone).
  $GO run ./test/netlab/cleanup
  # API servers, etcds, controller managers and schedulers orphaned by a killed lab or
  # test (their parent died, so they were handed to init). kube-proxy runs
  # in a node namespace and went with it.
  for pid in $(pgrep -f "/eiplb/k8s/[^ ]*/(kube-apiserver|etcd|kube-controller-manager|kube-scheduler)" || true); do
    if [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = 1 ]; then
      echo "lab: killing orphaned $(ps -o comm= -p "$pid") (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # eiplb binaries built by killed tests (each run builds its own into
  # $TMPDIR/eiplb-bin-*): removed when no process runs from them and they
  # are older than 10 minutes.
  for d in "${TMPDIR:-/tmp}"/eiplb-bin-*; do
    [ -d "$d" ] || continue
    [ -n "$(find "$d" -maxdepth 0 -mmin +10)" ] || continue
    if ! ls -l /proc/[0-9]*/exe 2>/dev/null | grep -q -- "-> $d/"; then
      rm -rf "$d"
    fi
  done
  rm -rf "$LAB_DIR"
}

up() {
  need_root lab-up
  if running; then
    echo "lab: already running (pid $(cat "$PIDFILE")); this is what it showed:"
    cat "$LAB_DIR/lab.out"
    return
  fi
  if [ -d "$LAB_DIR" ]; then
    echo "lab: removing what an earlier lab left"
    down
  fi
  assets=$(WITH_KUBECTL=1 hack/k8s-binaries.sh)
  mkdir -p bin "$LAB_DIR"
  $GO build -tags privileged -o bin/eiplb-lab ./test/e2e/lab
  KUBEBUILDER_ASSETS=$assets setsid bin/eiplb-lab -keep -dir "$LAB_DIR" >"$LAB_DIR/lab.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
  echo "lab: starting (pid $pid, output in $LAB_DIR/lab.out)"
  for _ in $(seq 1 1800); do
    if [ -f "$LAB_DIR/ready" ]; then
      cat "$LAB_DIR/lab.out"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$LAB_DIR/lab.out" >&2
      echo "lab: the lab exited before it was ready; see above and $LAB_DIR/lab.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "lab: not ready after 3 minutes; see $LAB_DIR/lab.out and $LAB_DIR/lab.log" >&2
  exit 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
