#!/usr/bin/env bash
# Install what the peer benchmarks (tests/bench/bench_celery.py, bench_quix.py, bench_ray.py) need and the
# engine does not: Debian's redis-server (the Celery broker; the benchmark starts its own private instance, the
# system service is left disabled); celery + redis + SQLAlchemy (PostgreSQL result backend) + py-spy (agent
# profiling in bench_engine.py) in the project's virtualenv; quixstreams in a virtualenv of its own,
# .venv-peers (it pins an older confluent-kafka than the engine's, which must stay as it is). With --ray, also
# Ray in .venv-peers: a large wheel (~60 MB, ~300 MB installed) that only the full run of run_all.py uses, so
# the smoke install (CI) leaves it out. Idempotent and cached: what is importable already is not fetched again.
#
#   .ci/install-bench-deps.sh [--ray]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh   # apt_install: package output to $SETUP_LOG
with_ray=0
for arg in "$@"; do
  case "$arg" in
    --ray) with_ray=1 ;;
    *) echo "usage: $0 [--ray]" >&2; exit 2 ;;
  esac
done

if ! command -v redis-server >/dev/null 2>&1; then
  # policy-rc.d: do not start the packaged service; the benchmark runs a private redis on a free port.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  apt_install --no-install-recommends redis-server
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
fi

if ! .venv/bin/python -c "import celery, redis, sqlalchemy" 2>/dev/null || [ ! -x .venv/bin/py-spy ]; then
  .venv/bin/pip install -q "celery[redis,sqlalchemy]" "SQLAlchemy>=2" py-spy
fi
.venv/bin/python -c "import celery, redis, sqlalchemy; print('celery', celery.__version__, '| redis-py', redis.__version__, '| SQLAlchemy', sqlalchemy.__version__)"
redis-server --version

if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
fi
if ! .venv-peers/bin/python -c "import quixstreams" 2>/dev/null; then
  .venv-peers/bin/pip install -q --disable-pip-version-check quixstreams
fi
if [ "$with_ray" = 1 ] && ! .venv-peers/bin/python -c "import ray" 2>/dev/null; then
  .venv-peers/bin/pip install -q --disable-pip-version-check ray
fi
.venv-peers/bin/python -W ignore -c "import quixstreams; print('quixstreams', quixstreams.__version__, '(.venv-peers)')"
if [ -d .venv-peers/lib ] && .venv-peers/bin/python -c "import ray" 2>/dev/null; then
  .venv-peers/bin/python -W ignore -c "import ray; print('ray', ray.__version__, '(.venv-peers)')" 2>/dev/null
fi
