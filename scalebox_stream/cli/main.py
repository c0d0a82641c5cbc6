"""The `scalebox` command."""

from __future__ import annotations

from pathlib import Path

import typer

from scalebox_stream.cli import access, cluster, local, mirror, module, run, state, status, task, workers
from scalebox_stream.cli import app as app_cmds
from scalebox_stream.cli.common import ScaleboxApp, cli_logging, settings

app = ScaleboxApp(name="scalebox", help="Run containerized pipelines of modules over Kafka.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from scalebox_stream.launch.about import version_lines

        for line in version_lines(settings()):
            typer.echo(line)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library logs (librdkafka, psycopg) and the "
                                 "engine's own on the terminal too; they always go to $SCALEBOX_HOME/logs."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print the version and the Kafka and PostgreSQL this command talks to."),
) -> None:
    """Run containerized pipelines of modules over Kafka."""
    try:
        home = settings().home
    except Exception:  # a bad setting is reported by the command that uses it, not here
        home = Path("~/.scalebox").expanduser()
    cli_logging(home / "logs" / "scalebox.log", verbose)

app.add_typer(local.app, name="local")
app.add_typer(app_cmds.app, name="app")
app.add_typer(task.app, name="task")
app.add_typer(module.app, name="module")
app.add_typer(access.app, name="access")
app.command("run")(run.run)
app_cmds.app.command("run", help="Scalebox's `app run`: the same as `scalebox run`.")(run.run)
app.command("status")(status.status)
app.command("agent")(workers.agent)
app.command("projector")(workers.projector)
app.command("replay")(workers.replay)
app.command("mirror")(mirror.mirror)
app.add_typer(state.semaphore, name="semaphore")
app.add_typer(state.semagroup_app, name="semagroup")
app.add_typer(state.variable, name="variable")
app.add_typer(state.global_app, name="global")
app_cmds.app.command("set-finished")(state.app_set_finished)
app.command("state-owner")(state.state_owner)
app.add_typer(cluster.cluster_app, name="cluster")
app.add_typer(cluster.host_app, name="host")
app.command("logs")(cluster.logs)
app.command("version")(cluster.version)

if __name__ == "__main__":
    app()
