#!/usr/bin/env bash
# Install Debian's docker-compose (v1, the Python one) when missing: compose/docker-compose.yml is started with
# it in tests/integration/test_compose_stack.py. Quiet and idempotent: a second run only looks for the command.
set -euo pipefail

if ! command -v docker-compose >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  # Another apt run on this machine may hold the dpkg lock for a while: wait for it rather than fail.
  apt_get() { apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" >>"$log" 2>&1; }
  if ! apt_get install --no-install-recommends docker-compose \
      && ! { apt_get update && apt_get install --no-install-recommends docker-compose; }; then
    tail -20 "$log" >&2
    rm -f "$log"
    echo "could not install docker-compose" >&2
    exit 1
  fi
  rm -f "$log"
  echo "installed docker-compose $(docker-compose version --short)"
fi
