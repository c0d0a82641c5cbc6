"""PostgreSQL with scram-sha-256 passwords and TLS only (Debian's server; the bundled one has no TLS): the
password and `sslmode=verify-full` are honoured from the DSN and from a libpq service file, a wrong CA or a
wrong password is refused, and no command prints the password."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pipeline import REPO, free_port

from scalebox_stream.local import tls
from scalebox_stream.projector.migrate import migrate

pytestmark = pytest.mark.integration

PASSWORD = "Pg-s3cret-do-not-print"
RUN_AS = "pgserver"
"""The unprivileged account the server runs as when the tests run as root (the embedded PostgreSQL's too)."""


@dataclass(frozen=True)
class TlsPostgres:
    root: Path
    port: int
    ca: Path

    def dsn(self, password: str = PASSWORD, ca: Path | None = None, sslmode: str = "verify-full") -> str:
        return (f"postgresql://postgres:{password}@localhost:{self.port}/postgres?sslmode={sslmode}"
                f"&sslrootcert={ca or self.ca}")


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            raise RuntimeError("Debian's postgresql is not installed (.ci/bootstrap installs it)")
        pytest.skip("Debian's postgresql (with TLS) is not installed")
    return found[-1].parent


def _as_server_user() -> dict:
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", RUN_AS], check=True)
        entry = pwd.getpwnam(RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    bin_dir, who = _binaries(), _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="sbx-pg-tls-"))
    root.chmod(0o755)
    ca = tls.make_ca(root / "tls", "PG test CA")
    server = tls.make_certificate(root / "tls", ca, "localhost")
    data, pwfile = root / "data", root / "pw"
    data.mkdir(mode=0o700)
    pwfile.write_text(PASSWORD + "\n")
    shutil.copy(ca.cert, root / "ca.pem")
    for path in (data, pwfile):
        if who:
            os.chown(path, who["user"], who["group"])
    pwfile.chmod(0o600)
    run = {"capture_output": True, "text": True, "cwd": "/", **who}
    made = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                           f"--pwfile={pwfile}", "--no-instructions"], **run)
    assert made.returncode == 0, made.stdout + made.stderr
    for source, name in ((server.cert, "server.crt"), (server.key, "server.key")):
        target = tls.write_private(data / name, source.read_text())
        if who:
            os.chown(target, who["user"], who["group"])
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n")  # TLS only
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nssl = on\n")
    log = root / "log"
    log.mkdir()
    if who:
        os.chown(log, who["user"], who["group"])
    started = subprocess.run([str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l",
                              str(log / "server.log")], **{**run, "capture_output": False, "stdout": subprocess.DEVNULL,
                                                           "stderr": subprocess.DEVNULL})
    assert started.returncode == 0, (log / "server.log").read_text() if (log / "server.log").exists() else ""
    server_pg = TlsPostgres(root, port, root / "ca.pem")
    try:
        with psycopg.connect(server_pg.dsn(), autocommit=True) as conn:
            migrate(conn)
        yield server_pg
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data)], **run)
        shutil.rmtree(root, ignore_errors=True)


def _sbx(args: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCALEBOX_PG", "PG"))}
    return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env={**base, **env}, cwd=REPO)


def test_password_and_verify_full_from_the_dsn_are_honoured_and_never_shown(tls_pg) -> None:
    listed = _sbx(["task", "list", "--app", "nothing-here", "--json", "--pg", tls_pg.dsn()])
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    status = _sbx(["status", "--json"], SCALEBOX_PG=tls_pg.dsn())
    assert status.returncode == 0, status.stderr
    for result in (listed, status):
        assert PASSWORD not in result.stdout + result.stderr


def test_a_libpq_service_file_with_a_password_file_works(tls_pg, tmp_path) -> None:
    passfile = tls.write_private(tmp_path / "pgpass", f"localhost:{tls_pg.port}:*:postgres:{PASSWORD}\n")
    service = tmp_path / "pg_service.conf"
    service.write_text(f"[sbx]\nhost=localhost\nport={tls_pg.port}\ndbname=postgres\nuser=postgres\n"
                       f"sslmode=verify-full\nsslrootcert={tls_pg.ca}\npassfile={passfile}\n")
    listed = _sbx(["task", "list", "--app", "nothing-here", "--json", "--pg", "service=sbx"],
                  PGSERVICEFILE=str(service))
    assert listed.returncode == 0, listed.stderr
    assert PASSWORD not in listed.stdout + listed.stderr


def test_an_untrusted_server_a_wrong_password_or_no_tls_is_refused_without_showing_the_password(tls_pg,
                                                                                                  tmp_path) -> None:
    other = tls.make_ca(tmp_path / "other", "Someone else's CA")
    untrusted = _sbx(["task", "list", "--app", "x", "--pg", tls_pg.dsn(ca=other.cert)])
    assert untrusted.returncode != 0 and "certificate not trusted" in untrusted.stderr, untrusted.stderr
    wrong = _sbx(["task", "list", "--app", "x", "--pg", tls_pg.dsn(password="Wrong-pw-also-secret")])
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr
    plain = _sbx(["task", "list", "--app", "x", "--pg", tls_pg.dsn(sslmode="disable")])
    assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr
    for result in (untrusted, wrong, plain):
        assert PASSWORD not in result.stderr and "Wrong-pw-also-secret" not in result.stderr
        assert "Traceback" not in result.stderr
