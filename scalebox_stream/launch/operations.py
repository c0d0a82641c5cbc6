"""The CLI's use cases besides `scalebox run`: adding tasks, module commands, cleaning up an app, preparing and
rebuilding the projection. Each takes plain values and raises `OperationError` with a message for the user."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from scalebox_stream.config import CliSettings
from scalebox_stream.kafka import cleanup
from scalebox_stream.kafka.config import admin_config, producer_config
from scalebox_stream.kafka.control import Command, send_command
from scalebox_stream.kafka.log_start import describe_gaps, find_gaps
from scalebox_stream.kafka.task_publisher import TaskSender, flush_or_fail
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_shared_topics, task_topic
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.spec.model import AppSpec


def add_tasks(settings: CliSettings, kafka: str, app: str, module: str, bodies: Sequence[str],
              headers: dict[str, str] | None = None) -> list[str]:
    """Send tasks to a deployed module, all in one transaction; their ids. Refuses if the module's topic is
    missing (the app is not deployed)."""
    topic = task_topic(app, module)
    if topic not in AdminClient(admin_config(kafka)).list_topics(timeout=settings.metadata_timeout_s).topics:
        raise OperationError(f"no topic {topic}: is app {app!r} with module {module!r} deployed (scalebox run)?",
                             code=2)
    return TaskSender(kafka, timeout_s=settings.flush_timeout_s).send(app, [(module, body) for body in bodies],
                                                                      headers)


def send_module_command(settings: CliSettings, kafka: str, app: str, module: str, command: str,
                        reason: str) -> None:
    """Tell every agent of a module to `suspend` or `resume`."""
    producer = Producer(producer_config(kafka))
    send_command(producer, Command(app, module, command, reason))
    flush_or_fail(producer, settings.flush_timeout_s)


def app_leftovers(kafka: str, app: str, force: bool) -> cleanup.AppLeftovers:
    """What cleaning `app` would delete. Refuses if nothing is left, or (unless `force`) while its agents run."""
    leftovers = cleanup.find_leftovers(AdminClient(admin_config(kafka)), app)
    if not leftovers.topics and not leftovers.groups:
        raise OperationError(f"app {app!r} has no task topics or consumer groups on this broker")
    if leftovers.busy_groups and not force:
        raise OperationError(f"agents of app {app!r} still run (groups {', '.join(leftovers.busy_groups)}); stop "
                             "them first or pass --force")
    return leftovers


def remove_leftovers(kafka: str, leftovers: cleanup.AppLeftovers) -> None:
    """Delete the idle consumer groups and the task topics `app_leftovers` found."""
    cleanup.remove(AdminClient(admin_config(kafka)), leftovers)


def prepare_shared_topics(kafka: str) -> None:
    """The events and dead-letter topics exist before a projector subscribes: on a fresh broker it would
    otherwise wait for a topic that nobody creates (and `--until-caught-up` would never end)."""
    ensure_shared_topics(AdminClient(admin_config(kafka)))


def drop_projection(kafka: str, pg: str, allow_gaps: bool = False) -> str | None:
    """Empty the projection to rebuild it from the log: the shared topics exist, the tables are new.

    Refuses, before dropping anything, if the events topic no longer starts at its first event (a rebuilt
    projection would silently lack the oldest tasks); with `allow_gaps`, goes on and returns what is gone."""
    import psycopg

    from scalebox_stream.projector.migrate import drop_projection, migrate

    prepare_shared_topics(kafka)
    gaps = find_gaps(kafka, EVENTS_TOPIC)
    lost = describe_gaps(EVENTS_TOPIC, gaps) if gaps else None
    if lost and not allow_gaps:
        raise OperationError(f"{lost}\nA replay would rebuild the projection without them; the projection is "
                             "left as it is. Pass --allow-gaps to rebuild from the events that are left.", code=1)
    with psycopg.connect(pg, autocommit=True) as conn:
        drop_projection(conn)
        migrate(conn)
    return lost


def executor_problems(spec: AppSpec) -> list[str]:
    """For each module whose executor cannot run on this host (a Podman service that does not answer, say), the
    module's key and why: `app validate` says so instead of the agent failing when it starts."""
    from scalebox_stream.executors import executor_problem

    return [f"modules.{name}.executor: {problem}" for name, module in spec.modules.items()
            if (problem := executor_problem(module.executor, module.container_mode))]
