#!/usr/bin/env bash
# Build the local images the tests and examples use, without any registry:
#   scalebox/base:busybox                   imported from a rootfs holding the host's static busybox
#   scalebox-examples/<name>:latest         one per entry of EXAMPLE_IMAGES below, FROM the base
#   scalebox/debian:bookworm                Debian 12 minbase with Python (debootstrap), the base of
#   scalebox-stream:latest                  the agents' and projectors' image (agents/build-image.sh)
#   scalebox/agent:latest                   the agent base image for module images (agents/base), FROM the Debian
#                                           base, also tagged with Scalebox's name hub.cstcloud.cn/scalebox/agent
# Idempotent and fast: an image is rebuilt only when missing or when its inputs changed (a content hash
# is kept in the image label `scalebox.input-hash`), or with --force.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"   # apt_install, note: package output to $SETUP_LOG
BASE_IMAGE=scalebox/base:busybox
DEBIAN_IMAGE=scalebox/debian:bookworm
AGENT_BASE_IMAGE=scalebox/agent:latest
AGENT_BASE_ALIASES=(hub.cstcloud.cn/scalebox/agent:latest)  # what Scalebox's app files and Dockerfiles say
BUSYBOX=${BUSYBOX:-/usr/bin/busybox}
FORCE=false
[ "${1:-}" = "--force" ] && FORCE=true

# Example images: "<tag> <build context relative to the repo> [Dockerfile relative to the context]".
# Add one line per example.
EXAMPLE_IMAGES=(
  "scalebox-examples/primes-calc:latest examples/primes"
)

export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed, never pulls a local base

# Hash of the given files (sorted by path), so that an edit triggers a rebuild.
input_hash() {
  (cd "$1" && find . -type f ! -name '*.md' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -c1-16
}

# Prints the input-hash label of an image, or nothing when the image is missing.
image_hash() {
  docker image inspect --format '{{ index .Config.Labels "scalebox.input-hash" }}' "$1" 2>/dev/null || true
}

up_to_date() { # <image> <hash>
  [ "$FORCE" = false ] && [ "$(image_hash "$1")" = "$2" ]
}

build_base() {
  local hash rootfs
  hash=$( (sha256sum "$BUSYBOX"; echo "base-v2") | sha256sum | cut -c1-16)
  if up_to_date "$BASE_IMAGE" "$hash"; then
    echo "$BASE_IMAGE is up to date"
    return
  fi
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,tmp,etc,root,work,app/bin}
  chmod 1777 "$rootfs/tmp"
  cp "$BUSYBOX" "$rootfs/bin/busybox"
  # The links `busybox --install -s` would make inside the rootfs (it links to /proc/self/exe, so it
  # cannot be run from the host without a chroot).
  "$BUSYBOX" --list-full | while read -r applet; do
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    --change "LABEL scalebox.input-hash=$hash" \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  note "built $BASE_IMAGE"
}

# A Debian 12 base with Python, made with debootstrap (no registry here): the scalebox-stream image's base in tests.
build_debian_base() {
  local hash rootfs
  hash=$(echo "debian-bookworm-minbase-python3-v1" | sha256sum | cut -c1-16)
  if up_to_date "$DEBIAN_IMAGE" "$hash"; then
    echo "$DEBIAN_IMAGE is up to date"
    return
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt_install debootstrap
  fi
  rootfs=$(mktemp -d)
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$rootfs.log" 2>&1; then
    tail -20 "$rootfs.log" >&2
    rm -rf "$rootfs" "$rootfs.log"
    echo "debootstrap failed" >&2
    return 1
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs.log"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL scalebox.input-hash=$hash" \
    - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  note "built $DEBIAN_IMAGE"
}

# build_image <tag> <context> [dockerfile]
build_image() {
  local tag="$1" ctx="$ROOT/$2" dockerfile="${3:-Dockerfile}" hash log
  hash=$( (input_hash "$ctx"; image_hash "$BASE_IMAGE") | sha256sum | cut -c1-16)
  if up_to_date "$tag" "$hash"; then
    echo "$tag is up to date"
    return
  fi
  log=$(mktemp)
  if ! docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "scalebox.input-hash=$hash" \
    -f "$ctx/$dockerfile" -t "$tag" "$ctx" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "failed to build $tag" >&2
    return 1
  fi
  rm -f "$log"
  note "built $tag"
}

# The agent base image (agents/base plus the in-task tools), tagged with Scalebox's name too.
build_agent_base() {
  local hash ctx log alias
  hash=$( (input_hash "$ROOT/agents/base"; input_hash "$ROOT/scalebox_stream/intask/bin"; image_hash "$DEBIAN_IMAGE";
           docker image inspect --format '{{.Id}}' "$DEBIAN_IMAGE" 2>/dev/null) | sha256sum | cut -c1-16)
  if up_to_date "$AGENT_BASE_IMAGE" "$hash"; then
    echo "$AGENT_BASE_IMAGE is up to date"
  else
    ctx=$(mktemp -d)
    cp "$ROOT"/agents/base/Dockerfile "$ROOT"/agents/base/entrypoint.sh "$ctx/"
    mkdir "$ctx/bin"
    cp "$ROOT"/scalebox_stream/intask/bin/* "$ctx/bin/"
    log=$(mktemp)
    if ! docker build --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" --label "scalebox.input-hash=$hash" \
        -t "$AGENT_BASE_IMAGE" "$ctx" >"$log" 2>&1; then
      cat "$log" >&2
      rm -rf "$ctx" "$log"
      echo "failed to build $AGENT_BASE_IMAGE" >&2
      return 1
    fi
    rm -rf "$ctx" "$log"
    echo "built $AGENT_BASE_IMAGE"
  fi
  for alias in "${AGENT_BASE_ALIASES[@]}"; do
    docker tag "$AGENT_BASE_IMAGE" "$alias"
  done
}

build_base
for entry in "${EXAMPLE_IMAGES[@]}"; do
  # shellcheck disable=SC2086  # entry is "<tag> <context> [dockerfile]"
  build_image $entry
done
build_debian_base
build_agent_base
bash "$ROOT/agents/build-image.sh" --base "$DEBIAN_IMAGE"   # scalebox-stream:latest, for agents and projectors
# Drop the untagged leftovers of earlier builds of these images.
docker image prune -f --filter label=scalebox.input-hash >/dev/null
