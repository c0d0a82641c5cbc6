"""`scalebox module suspend|resume`: stop or restart the admission of a module's tasks on every agent."""

from __future__ import annotations

import typer

from scalebox_stream.cli.common import KafkaOption, PgOption, connect, explain, fail, settings
from scalebox_stream.launch.operations import send_module_command

app = typer.Typer(help="Suspend or resume a module.", no_args_is_help=True)


def _send(app_name: str, module: str, command: str, reason: str, kafka: str | None, pg: str | None) -> None:
    cli = settings(kafka, pg)
    bootstrap = connect(cli, ("kafka",)).kafka
    try:
        send_module_command(cli, bootstrap, app_name, module, command, reason)
    except RuntimeError as exc:
        fail(explain(exc), code=1)
    typer.echo(f"{command} sent to the agents of {app_name}/{module}")


@app.command("resume")
def resume(
    app_name: str = typer.Option(..., "--app"),
    module: str = typer.Option(..., "--module"),
    reason: str = typer.Option("resumed from the CLI", "--reason"),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Resume a module whose error budget was spent (or that was suspended by hand)."""
    _send(app_name, module, "resume", reason, kafka, pg)


@app.command("suspend")
def suspend(
    app_name: str = typer.Option(..., "--app"),
    module: str = typer.Option(..., "--module"),
    reason: str = typer.Option("suspended from the CLI", "--reason"),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Stop a module's agents from starting tasks (running ones finish) until resumed."""
    _send(app_name, module, "suspend", reason, kafka, pg)
