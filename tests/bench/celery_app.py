"""The Celery side of bench_celery.py: two stages that each run /bin/true in a subprocess; stage a's result
is chained to stage b (`chain(stage_a.s(i), stage_b.s())`). The workers' app takes its broker, result backend
and tuning from the environment, set by bench_celery.py: SBX_CELERY_BROKER, SBX_CELERY_BACKEND,
SBX_CELERY_PREFETCH (worker_prefetch_multiplier) and SBX_CELERY_ACKS_LATE (1: a task is acknowledged once it
finished, and redelivered if its worker process dies, the durability closest to the engine's). The driver makes
an app of its own per broker with `make_app` (Celery caches its connection pool and backend per app)."""

from __future__ import annotations

import os
import subprocess

from celery import Celery

STAGE_A, STAGE_B = "celery_app.stage_a", "celery_app.stage_b"


def spawn(i: int) -> int:
    """A stage's work: /bin/true with the body and headers as arguments, like the engine's stages."""
    subprocess.run(["/bin/true", str(i), "{}"], check=True)
    return i


def make_app(broker: str, backend: str, prefetch: int = 1, acks_late: bool = True) -> Celery:
    """A Celery app with both stages, each routed to its own queue."""
    app = Celery("sbx_bench", broker=broker, backend=backend)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_routes={STAGE_A: {"queue": "sbx_a"}, STAGE_B: {"queue": "sbx_b"}},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=prefetch,
        task_acks_late=acks_late,
        task_reject_on_worker_lost=acks_late,
        worker_disable_rate_limits=True,  # no task has a rate limit: skip the per-task token-bucket check
    )
    app.task(name=STAGE_A)(spawn)
    app.task(name=STAGE_B)(spawn)
    return app


app = make_app(os.environ.get("SBX_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
               os.environ.get("SBX_CELERY_BACKEND", "cache+memory://"),
               int(os.environ.get("SBX_CELERY_PREFETCH", "1")), os.environ.get("SBX_CELERY_ACKS_LATE", "1") == "1")
