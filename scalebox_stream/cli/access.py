"""`scalebox access ...`: SCRAM users and role ACLs on a secured cluster (run as a Kafka super user)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalebox_stream.cli.common import connections, fail

app = typer.Typer(help="Kafka users and the ACLs of Scalebox's roles (agent, projector, state-owner, operator).",
                  no_args_is_help=True)

KafkaOpt = Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")]


@app.callback()
def _group() -> None:
    """Kafka users and the ACLs of Scalebox's roles."""


@app.command("user")
def user(
    name: Annotated[str, typer.Argument(help="The SCRAM user to create (or whose password to change).")],
    password_file: Annotated[Path, typer.Option("--password-file", help="A file (mode 600) holding the password.")],
    kafka: KafkaOpt = None,
) -> None:
    """Create a SCRAM-SHA-512 user; its password is read from a file, never from the command line."""
    from scalebox_stream.launch.access import add_user
    from scalebox_stream.launch.errors import OperationError

    try:
        add_user(connections(kafka, None, ("kafka",)).kafka, name, password_file)
    except OperationError as exc:
        fail(str(exc), exc.code)
    typer.echo(f"user {name}: SCRAM-SHA-512 credential set")


@app.command("grant")
def grant(
    role: Annotated[str, typer.Argument(help="agent, projector, state-owner or operator.")],
    name: Annotated[str, typer.Argument(help="The user (SCRAM name, or a certificate's distinguished name).")],
    app_name: Annotated[str | None, typer.Option("--app", help="The app an agent serves (agents only).")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Only list the ACL entries.")] = False,
    kafka: KafkaOpt = None,
) -> None:
    """Allow `name` what `role` needs and nothing more (an agent: its app's task topics, writing events)."""
    from scalebox_stream.kafka.acls import ROLES
    from scalebox_stream.launch.access import grant as make
    from scalebox_stream.launch.errors import OperationError

    if role not in ROLES:
        fail(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    bootstrap = "" if print_only else connections(kafka, None, ("kafka",)).kafka
    try:
        entries = make(bootstrap, role, name, app_name, apply=not print_only)  # type: ignore[arg-type]
    except OperationError as exc:
        fail(str(exc), exc.code)
    for entry in entries:
        typer.echo(str(entry))
    if not print_only:
        typer.echo(f"{len(entries)} ACL entr{'y' if len(entries) == 1 else 'ies'} for {role} {name}", err=True)
