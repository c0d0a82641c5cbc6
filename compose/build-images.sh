#!/usr/bin/env bash
# Builds every image of compose/docker-compose.yml that can be built without an image registry, each from the
# local Debian base (scalebox/debian:bookworm, made with debootstrap by .ci/build-images.sh):
#   scalebox/kafka:4        Kafka 4.x (KRaft) from the Maven jars of scalebox_stream/local/maven/pom.xml, Debian's JRE
#   scalebox/postgres:15    Debian's postgresql-15
#   scalebox/prometheus:2   Debian's prometheus
#   scalebox-stream:latest  agents and projectors (agents/build-image.sh)
# Grafana is not among them: its image comes from a registry only (the compose profile `grafana`).
#   compose/build-images.sh [--force]
# Cached: an image whose inputs (its directory under compose/images/, the base image, for Kafka the pom) did not
# change is not rebuilt (label scalebox.input-hash), unless --force.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=scalebox/debian:bookworm
POM=$ROOT/scalebox_stream/local/maven/pom.xml
FORCE=false
[ "${1:-}" = --force ] && FORCE=true
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed, never pulls a local base

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  bash "$ROOT/.ci/build-images.sh"   # makes the Debian base (and the project's other local images)
fi
base_id=$(docker image inspect --format '{{.Id}}' "$BASE")

# Hash of an image's inputs: the files of its directory, the base image, and any extra file given.
input_hash() { # <dir> [file...]
  local dir=$1; shift
  { (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    for f in "$@"; do sha256sum <"$f"; done
    echo "$base_id"; } | sha256sum | cut -c1-16
}

# build <tag> <name> [file...]: builds compose/images/<name> (plus what prepare_<name> adds to the context).
build() {
  local tag=$1 name=$2 dir=$ROOT/compose/images/$2 hash ctx log
  shift 2
  hash=$(input_hash "$dir" "$@")
  if [ "$FORCE" = false ] \
      && [ "$(docker image inspect --format '{{ index .Config.Labels "scalebox.input-hash" }}' "$tag" 2>/dev/null)" = "$hash" ]; then
    echo "$tag is up to date"
    return
  fi
  ctx=$(mktemp -d)
  log=$(mktemp)
  cp -r "$dir"/. "$ctx"/
  if [ "$name" = kafka ]; then
    # The broker's jars, resolved from ~/.m2 (fetched from Maven Central only when missing there).
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$ctx/lib" >"$log" 2>&1 \
        || ! compgen -G "$ctx/lib/kafka_2.13-*.jar" >/dev/null; then
      cat "$log" >&2
      rm -rf "$ctx" "$log"
      echo "could not resolve the Kafka jars of $POM" >&2
      return 1
    fi
  fi
  if ! docker build --build-arg "BASE=$BASE" --label "scalebox.input-hash=$hash" -t "$tag" "$ctx" >"$log" 2>&1; then
    tail -40 "$log" >&2
    rm -rf "$ctx" "$log"
    echo "failed to build $tag" >&2
    return 1
  fi
  rm -rf "$ctx" "$log"
  echo "built $tag"
}

build scalebox/kafka:4 kafka "$POM"
build scalebox/postgres:15 postgres
build scalebox/prometheus:2 prometheus
bash "$ROOT/agents/build-image.sh" --base "$BASE" $([ "$FORCE" = true ] && echo --force)
# Drop the untagged leftovers of earlier builds.
docker image prune -f --filter label=scalebox.input-hash >/dev/null
