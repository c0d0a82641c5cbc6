"""The `scalebox` command."""

from __future__ import annotations

from scalebox_stream.cli import access, local, mirror, module, run, state, status, task, workers
from scalebox_stream.cli import app as app_cmds
from scalebox_stream.cli.common import ScaleboxApp

app = ScaleboxApp(name="scalebox", help="Run containerized pipelines of modules over Kafka.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(local.app, name="local")
app.add_typer(app_cmds.app, name="app")
app.add_typer(task.app, name="task")
app.add_typer(module.app, name="module")
app.add_typer(access.app, name="access")
app.command("run")(run.run)
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

if __name__ == "__main__":
    app()
