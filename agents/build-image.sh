#!/usr/bin/env bash
# Builds the scalebox-stream image (agents and projectors) from this checkout:
#   agents/build-image.sh [--base IMAGE] [--tag TAG] [--force]
# The project and its dependencies are built as wheels on this host (with the project's .venv Python, the
# same minor version as the image's), then installed in the image without a package index. Skipped when an
# image of the same inputs exists (label scalebox.input-hash), unless --force.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=python:3.11-slim-bookworm
TAG=scalebox-stream:latest
FORCE=false
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --force) FORCE=true; shift ;;
    *) echo "usage: $0 [--base IMAGE] [--tag TAG] [--force]" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

hash=$( (cd "$ROOT" && git ls-files -z -- scalebox_stream schemas pyproject.toml agents/Dockerfile ':!scalebox_stream/events/avsc' \
           | xargs -0 sha256sum; docker image inspect --format '{{.Id}}' "$BASE" 2>/dev/null) | sha256sum | cut -c1-16)
current=$(docker image inspect --format '{{ index .Config.Labels "scalebox.input-hash" }}' "$TAG" 2>/dev/null || true)
if [ "$FORCE" = false ] && [ "$current" = "$hash" ]; then
  echo "$TAG is up to date"
  exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$PYTHON" -m pip wheel --quiet --wheel-dir "$ctx/wheels" "$ROOT" 2> >(grep -v -e '^ *!!' -e 'BuildBackendWarning' >&2 || true)
cp "$ROOT/agents/Dockerfile" "$ctx/"
log=$(mktemp)
if ! DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$BASE" --label "scalebox.input-hash=$hash" -t "$TAG" "$ctx" \
    >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "failed to build $TAG" >&2
  exit 1
fi
rm -f "$log"
echo "built $TAG (from $BASE)"
