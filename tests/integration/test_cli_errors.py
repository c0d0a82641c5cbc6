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


def test_mirror_names_what_is_missing_and_prints_a_config_with_every_cluster(tmp_path, kafka_bootstrap, pg_dsn):
    app = tmp_path / "app.yaml"
    app.write_text("name: split\ncluster: home\nmodules:\n  a: {command: /bin/true, sink_modules: [b]}\n"
                   "  b: {command: /bin/true, cluster: far}\n")
    cases = [(["mirror", str(app)], "no bootstrap servers for cluster(s) far: give --cluster NAME=BOOTSTRAP"),
             (["mirror", str(app), "-c", "far=f:9092", "-c", "moon=m:9092"], "no app runs a module on cluster(s) moon"),
             (["mirror", str(app), "-c", "far"], "--cluster takes NAME=BOOTSTRAP")]
    other = tmp_path / "other.yaml"
    other.write_text("name: other\ncluster: far\nmodules:\n  c: {command: /bin/true, cluster: home}\n")
    cases.append((["mirror", str(app), str(other)], "apps mirrored together must share their home cluster"))
    for args, message in cases:
        result = scalebox(args, kafka_bootstrap, pg_dsn)
        assert (result.code, message in result.stderr, "Traceback" in result.stderr) == (2, True, False), result
    printed = scalebox(["mirror", str(app), "-c", "far=f:9092", "--print"], kafka_bootstrap, pg_dsn)
    assert printed.code == 0, printed.stderr
    assert f"home.bootstrap.servers = {kafka_bootstrap}" in printed.stdout  # the home defaults to --kafka
    assert "far.bootstrap.servers = f:9092" in printed.stdout and "far->home.enabled = true" in printed.stdout
