"""A task body reaches the program verbatim as argv[1] and is never interpreted by a shell."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pipeline import list_tasks, scalebox, utc_now

ECHO_ARGS = """#!/bin/sh
printf '%s' "$1" > "$WORK_DIR/custom-out.txt"
"""


def _body(marker: Path) -> str:
    return f"$(touch {marker}); x `touch {marker}` && touch {marker}; 'q' \"dq\""


def _run(app_yaml: str, tmp_path: Path, kafka: str, pg: str, app: str, marker: Path) -> dict:
    (tmp_path / "app.yaml").write_text(app_yaml)
    since = utc_now()
    result = scalebox(["run", str(tmp_path / "app.yaml"), _body(marker)], kafka, pg)
    assert result.code == 0, result.stderr
    (task,) = list_tasks(kafka, pg, app, since=since)
    return task


def test_body_is_argv_not_shell_with_the_process_executor(tmp_path, kafka_bootstrap, pg_dsn):
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    script = tmp_path / "echo.sh"
    script.write_text(ECHO_ARGS)
    script.chmod(0o755)
    app = f"argv-{uuid.uuid4().hex[:8]}"
    task = _run(f"name: {app}\nmodules:\n  echo:\n    command: ./echo.sh\n", tmp_path, kafka_bootstrap, pg_dsn,
                app, marker)
    assert task["custom_out"] == _body(marker)
    assert not marker.exists()


@pytest.mark.usefixtures("busybox_image")
def test_body_is_argv_not_shell_with_the_docker_executor(tmp_path, kafka_bootstrap, pg_dsn, docker_client):
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    app = f"argv-{uuid.uuid4().hex[:8]}"
    yaml = (f"name: {app}\nmodules:\n  echo:\n    image: scalebox/base:busybox\n"
            f"    command: [/bin/sh, -c, 'printf %s \"$1\" > /work/custom-out.txt; test ! -e {marker}', sh]\n")
    task = _run(yaml, tmp_path, kafka_bootstrap, pg_dsn, app, marker)
    assert task["custom_out"] == _body(marker)
    assert task["exit_code"] == 0, "the marker file exists inside the container"
    assert not marker.exists()
