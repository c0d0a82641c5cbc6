#!/usr/bin/env bash
# Install Docker (Debian's docker.io) and busybox-static when missing, and start dockerd when it is
# not answering. Idempotent: a second run only prints the server version.
#
# Flags: DOCKERD_FLAGS (env) forces one flag set. Otherwise the flag sets below are tried in order until
# one daemon comes up; in this sandbox (Debian 12, cgroup v1, root, ext4) the first (plain defaults:
# overlay2 storage, iptables, bridge network) works. The fallbacks are for kernels without iptables or
# overlayfs.
set -euo pipefail
# shellcheck source=.ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # apt_install, note: package output to $SETUP_LOG

LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
WAIT_S=${DOCKERD_WAIT_S:-60}

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /usr/bin/busybox ] || need_pkgs+=(busybox-static)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  apt_install "${need_pkgs[@]}"
  note "installed ${need_pkgs[*]}"
fi

docker_ok() { docker info >/dev/null 2>&1; }

# Starts dockerd with the given flags; returns 0 once `docker info` answers, 1 if the daemon died or
# did not answer within WAIT_S seconds (then it is stopped).
try_dockerd() {
  local flags="$1" pid deadline
  echo "starting dockerd ${flags:-(default flags)}; log: $LOG"
  # setsid: its own session, so the end of the calling job or terminal does not take it down.
  # shellcheck disable=SC2086  # flags are a word list on purpose
  setsid "$DOCKERD" $flags >>"$LOG" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + WAIT_S))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if docker_ok; then
      echo "$pid" >/var/run/scalebox-dockerd.pid
      note "started dockerd${flags:+ $flags}"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dockerd exited early with flags '${flags}'; last log lines:" >&2
      tail -n 5 "$LOG" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  echo "dockerd did not answer within ${WAIT_S}s with flags '${flags}'" >&2
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 1
}

if ! docker_ok; then
  if [ -n "${DOCKERD_FLAGS+x}" ]; then
    candidates=("$DOCKERD_FLAGS")
  else
    candidates=(
      ""
      "--iptables=false --ip-masq=false --bridge=none"
      "--iptables=false --ip-masq=false --bridge=none --storage-driver=vfs"
    )
  fi
  started=false
  for flags in "${candidates[@]}"; do
    if try_dockerd "$flags"; then
      started=true
      break
    fi
  done
  if [ "$started" != true ]; then
    echo "could not start dockerd; see $LOG" >&2
    exit 1
  fi
fi

note "docker $(docker version --format '{{.Server.Version}}')"
