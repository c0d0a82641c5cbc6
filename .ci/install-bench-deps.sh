#!/usr/bin/env bash
# Install what the peer benchmark (tests/bench/bench_celery.py) needs and the engine does not:
# Debian's redis-server (the Celery broker; the benchmark starts its own private instance, the system
# service is left disabled), and celery + redis + SQLAlchemy (PostgreSQL result backend) + py-spy (agent
# profiling in bench_engine.py) in the project's virtualenv. Idempotent: a second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing: redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # policy-rc.d: do not start the packaged service; the benchmark runs a private redis on a free port.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  apt-get install -y -q --no-install-recommends redis-server
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
fi

.venv/bin/pip install -q --upgrade "celery[redis,sqlalchemy]" "SQLAlchemy>=2" py-spy
.venv/bin/python -c "import celery, redis, sqlalchemy; print('celery', celery.__version__, '| redis-py', redis.__version__, '| SQLAlchemy', sqlalchemy.__version__)"
redis-server --version
