"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from scalebox_stream.spec import templating


@pytest.fixture
def no_host_env_files(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep /etc/scalebox/environments and ~/.scalebox/environments of this machine out of app-file tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setattr(templating, "SYSTEM_ENV_FILE", home / "no-such-file")
    monkeypatch.setenv("HOME", str(home))
