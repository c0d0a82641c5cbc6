#!/usr/bin/env bash
# Build scalebox-test/host:latest (tests/hosts/Dockerfile: Debian 12 with openssh-server, FROM the
# debootstrap base of .ci/build-images.sh), only when missing or when its inputs changed. Quiet on success.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=scalebox-test/host:latest
BASE=scalebox/debian:bookworm
export DOCKER_BUILDKIT=0
if ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then  # the tests' SSH client
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-client >/dev/null
fi
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  bash "$ROOT/.ci/build-images.sh" >/dev/null
fi
hash=$( (cd "$ROOT/tests/hosts" && sha256sum Dockerfile entrypoint.sh relay.py;
         docker image inspect --format '{{.Id}}' "$BASE") | sha256sum | cut -c1-16)
if [ "$(docker image inspect --format '{{ index .Config.Labels "scalebox.input-hash" }}' "$IMAGE" 2>/dev/null)" = "$hash" ]; then
  exit 0
fi
log=$(mktemp)
if ! docker build --build-arg "BASE=$BASE" --label "scalebox.input-hash=$hash" -t "$IMAGE" "$ROOT/tests/hosts" \
    >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; echo "failed to build $IMAGE" >&2; exit 1
fi
rm -f "$log"
echo "built $IMAGE"
