"""The Celery side of bench_celery.py: two stages that each run /bin/true in a subprocess; stage a's result
is chained to stage b (`chain(stage_a.s(i), stage_b.s())`). Broker, result backend and the tuning come from the
environment, set by bench_celery.py for its worker children: SBX_CELERY_BROKER, SBX_CELERY_BACKEND,
SBX_CELERY_PREFETCH (worker_prefetch_multiplier) and SBX_CELERY_ACKS_LATE (1: a task is acknowledged once it
finished, and redelivered if its worker process dies, the durability closest to the engine's)."""

from __future__ import annotations

import os
import subprocess

from celery import Celery

ACKS_LATE = os.environ.get("SBX_CELERY_ACKS_LATE", "1") == "1"

app = Celery("sbx_bench", broker=os.environ.get("SBX_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("SBX_CELERY_BACKEND", "cache+memory://"))
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    task_routes={"celery_app.stage_a": {"queue": "sbx_a"}, "celery_app.stage_b": {"queue": "sbx_b"}},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=int(os.environ.get("SBX_CELERY_PREFETCH", "1")),
    task_acks_late=ACKS_LATE,
    task_reject_on_worker_lost=ACKS_LATE,
    result_extended=False,
)


@app.task(name="celery_app.stage_a")
def stage_a(i: int) -> int:
    """Stage a: run /bin/true; the chain passes the result to stage b."""
    subprocess.run(["/bin/true", str(i), "{}"], check=True)
    return i


@app.task(name="celery_app.stage_b")
def stage_b(i: int) -> int:
    """Stage b: run /bin/true."""
    subprocess.run(["/bin/true", str(i), "{}"], check=True)
    return i
