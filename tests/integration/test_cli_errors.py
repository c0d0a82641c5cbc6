"""Bad input gets a clear error and exit code 2, with no traceback."""

from __future__ import annotations

from pipeline import scalebox


def test_invalid_app_file_names_file_field_and_line(tmp_path, kafka_bootstrap, pg_dsn):
    app = tmp_path / "app.yaml"
    app.write_text("name: broken\nmodules:\n  calc:\n    command: /bin/true\n    slots: two\n")
    for args in (["run", str(app), "x"], ["app", "validate", str(app)]):
        result = scalebox(args, kafka_bootstrap, pg_dsn)
        assert result.code == 2
        assert f"{app}:5" in result.stderr and "modules.calc.slots" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_missing_app_file(tmp_path, kafka_bootstrap, pg_dsn):
    result = scalebox(["run", str(tmp_path / "nope.yaml")], kafka_bootstrap, pg_dsn)
    assert result.code == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr
