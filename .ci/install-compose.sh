#!/usr/bin/env bash
# Install Debian's docker-compose (v1, the Python one) when missing: compose/docker-compose.yml is started with
# it in tests/integration/test_compose_stack.py. Quiet and idempotent: a second run only looks for the command.
set -euo pipefail
# shellcheck source=.ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # apt_install, note: package output to $SETUP_LOG

if ! command -v docker-compose >/dev/null 2>&1; then
  apt_install --no-install-recommends docker-compose   # waits for another apt run's lock rather than fail
  note "installed docker-compose $(docker-compose version --short)"
fi
