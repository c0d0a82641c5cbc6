#!/usr/bin/env bash
# Podman for the podman executor: Debian's podman (+ catatonit, the init of slot containers), explicit
# default ulimits, its Docker-compatible API service, and the locally built images copied from Docker.
# Idempotent and quick when warm (no apt, no image copy when nothing changed).
#
#   .ci/install-podman.sh                    everything, for root (socket /run/podman/podman.sock)
#   .ci/install-podman.sh --images           only copy changed images from Docker (root's store)
#   .ci/install-podman.sh --rootless USER    the same for USER's rootless Podman: creates USER (with
#                                            subordinate uid/gid ranges) if missing, starts the service
#                                            on /run/user/UID/podman/podman.sock, copies the images
#
# Why the ulimits: Podman gives containers RLIMIT_NOFILE 1048576 by default, above this machine's hard
# limit, and every start fails ("error setting rlimit type 7: operation not permitted"). The drop-in sets
# the machine's own limits (nproc no higher than pid_max, where Podman caps itself). The executor sets
# them per container as well; the drop-in is for `podman run` by hand.
# exit_command_delay: Podman keeps two conmon processes per exec for this long after the exec ended (default
# 300 s, for API clients that ask for the exit code late); slot containers run one exec per task, and the
# executor asks at once, so 300 s would pile up thousands of processes at a few tasks per second.
# A changed drop-in restarts the API services this script started.
set -euo pipefail
# shellcheck source=.ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # apt_install, note: package output to $SETUP_LOG

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES=(scalebox/base:busybox scalebox-examples/primes-calc:latest)
CONF=${PODMAN_CONF:-/etc/containers/containers.conf.d/50-scalebox.conf}
PIDS=${PODMAN_PID_DIR:-/run}   # where the API services this script started are remembered
WAIT_S=${PODMAN_WAIT_S:-30}
CONF_CHANGED=false

install_packages() {
  local need=()
  command -v podman >/dev/null 2>&1 || need+=(podman)
  [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
  if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
    note "installed ${need[*]}"
  fi
}

write_conf() {
  local nofile nproc pid_max text
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
  [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
  text=$(printf '# written by scalebox-stream .ci/install-podman.sh\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nexit_command_delay = 15\n' \
    "$nofile" "$nofile" "$nproc" "$nproc")
  if [ "$(cat "$CONF" 2>/dev/null)" != "$text" ]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$text" >"$CONF"
    CONF_CHANGED=true
  fi
}

# as_user USER CMD...: runs CMD as USER with its rootless Podman environment (root: as is).
as_user() {
  local user=$1; shift
  if [ "$user" = root ]; then
    "$@"
  else
    local uid; uid=$(id -u "$user")
    (cd / && runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" \
      XDG_RUNTIME_DIR="/run/user/$uid" "$@")
  fi
}

detached() { # CMD...: execs CMD with every descriptor above 2 closed
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  exec "$@"
}

socket_of() { if [ "$1" = root ]; then echo /run/podman/podman.sock; else echo "/run/user/$(id -u "$1")/podman/podman.sock"; fi; }

service_ok() { as_user "$1" podman --url "unix://$(socket_of "$1")" version >/dev/null 2>&1; }

start_service() { # <user>
  local user=$1 sock log pid deadline
  sock=$(socket_of "$user")
  if [ "$CONF_CHANGED" = true ] && [ -s "$PIDS/scalebox-podman-$user.pid" ]; then
    kill "$(cat "$PIDS/scalebox-podman-$user.pid")" 2>/dev/null || true   # ours: restart it with the new drop-in
    rm -f "$PIDS/scalebox-podman-$user.pid"
    sleep 0.5
  fi
  if service_ok "$user"; then return 0; fi
  log=/var/log/podman-service-$user.log
  mkdir -p "$(dirname "$sock")"
  [ "$user" = root ] || chown "$user:" "$(dirname "$sock")"
  rm -f "$sock"
  echo "starting podman system service for $user on $sock; log: $log"
  # setsid: its own session, so the end of the calling job does not take it down. --time=0: never exits.
  # detached: no descriptor of the caller's but the standard three (a lock held by whoever ran this script,
  # such as a test session's, must not stay held by the service for ever).
  if [ "$user" = root ]; then
    detached setsid podman system service --time=0 "unix://$sock" >>"$log" 2>&1 </dev/null &
  else
    detached setsid runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" \
      XDG_RUNTIME_DIR="/run/user/$(id -u "$user")" podman system service --time=0 "unix://$sock" >>"$log" 2>&1 </dev/null &
  fi
  pid=$!
  deadline=$((SECONDS + WAIT_S))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if service_ok "$user"; then
      echo "$pid" >"$PIDS/scalebox-podman-$user.pid"
      return 0
    fi
    sleep 0.3
  done
  echo "the podman API service for $user did not answer within ${WAIT_S}s; see $log" >&2
  return 1
}

# Copies each image from Docker when Podman's copy is missing or older (image ids are content hashes,
# the same in both engines).
copy_images() { # <user>
  local user=$1 image want have
  command -v docker >/dev/null 2>&1 || { echo "docker is not installed: no images to copy" >&2; return 0; }
  for image in "${IMAGES[@]}"; do
    want=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null) || { echo "no docker image $image (run .ci/build-images.sh)" >&2; continue; }
    have=$(as_user "$user" podman image inspect --format '{{.Id}}' "localhost/$image" 2>/dev/null || true)
    if [ "${want#sha256:}" != "${have#sha256:}" ]; then
      docker save "$image" | as_user "$user" podman load -q >/dev/null
      echo "copied $image to podman ($user)"
    fi
  done
  as_user "$user" podman image prune -f >/dev/null 2>&1 || true  # the untagged old copies
}

# use_overlay USER: the rootless store on the kernel's own overlay driver. Podman falls back to vfs where
# fuse-overlayfs cannot open /dev/fuse, and vfs gives every container a root directory of mode 0700: a
# non-root module user (the default) then cannot even exec /bin/sh. A vfs store of USER is reset (its
# images are copied again afterwards).
use_overlay() { # <user>
  local user=$1 home conf text
  home=$(getent passwd "$user" | cut -d: -f6)
  conf=$home/.config/containers/storage.conf
  text=$(printf '# written by scalebox-stream .ci/install-podman.sh\n[storage]\ndriver = "overlay"\n')
  [ "$(cat "$conf" 2>/dev/null)" = "$text" ] && return 0
  if [ "$(as_user "$user" podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null)" != overlay ]; then
    if [ -s "/run/scalebox-podman-$user.pid" ]; then
      kill "$(cat "/run/scalebox-podman-$user.pid")" 2>/dev/null || true
      rm -f "/run/scalebox-podman-$user.pid"
      sleep 0.5
    fi
    as_user "$user" podman system reset -f >/dev/null 2>&1 || true
  fi
  as_user "$user" mkdir -p "$(dirname "$conf")"
  printf '%s\n' "$text" | as_user "$user" tee "$conf" >/dev/null
  echo "rootless podman of $user: overlay storage"
}

ensure_user() { # <user>: a normal user with subordinate id ranges and a runtime dir
  local user=$1 uid
  id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$user"
  grep -q "^$user:" /etc/subuid || usermod --add-subuids 1000000-1065535 "$user"
  grep -q "^$user:" /etc/subgid || usermod --add-subgids 1000000-1065535 "$user"
  uid=$(id -u "$user")
  install -d -m 700 -o "$user" -g "$(id -g "$user")" "/run/user/$uid"
}

case "${1:-}" in
  --images)
    copy_images root
    ;;
  --rootless)
    user=${2:?usage: install-podman.sh --rootless USER}
    install_packages
    write_conf
    ensure_user "$user"
    use_overlay "$user"
    start_service "$user"
    copy_images "$user"
    ;;
  "")
    install_packages
    write_conf
    start_service root
    copy_images root
    note "podman $(podman --url unix:///run/podman/podman.sock version --format '{{.Server.Version}}')"
    ;;
  *)
    echo "usage: $0 [--images | --rootless USER]" >&2
    exit 2
    ;;
esac
