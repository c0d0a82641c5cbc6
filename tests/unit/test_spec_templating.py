"""`${VAR}` templating: env files, precedence, defaults, `$$`, undefined variables with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalebox_stream.spec import SpecError, load_app, templating
from scalebox_stream.spec.templating import collect_variables, parse_env_file, render


@pytest.fixture
def layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """System and user env files under tmp_path, and an app dir."""
    home = tmp_path / "home"
    (home / ".scalebox").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    system = tmp_path / "etc-environments"
    monkeypatch.setattr(templating, "SYSTEM_ENV_FILE", system)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    return {"system": system, "user": home / ".scalebox" / "environments", "app": app_dir / "scalebox.env",
            "app_dir": app_dir, "extra1": tmp_path / "one.env", "extra2": tmp_path / "two.env"}


def test_parse_env_file(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text('# comment\n\nA=1\nexport B = two words\nC="quoted # not a comment"\n'
                    "D='single'\nE=\nF=value # trailing comment\nG=a#b\nH=x=y\n")
    assert parse_env_file(path) == {"A": "1", "B": "two words", "C": "quoted # not a comment",
                                    "D": "single", "E": "", "F": "value", "G": "a#b", "H": "x=y"}


def test_parse_env_file_errors_have_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("A=1\nnot a pair\n1X=2\n")
    with pytest.raises(SpecError) as info:
        parse_env_file(path)
    err = info.value
    assert [(i.line, i.field) for i in err.issues] == [(2, ""), (3, "1X")]
    assert f"{path}:2: expected KEY=value" in str(err)


def test_precedence(layers: dict[str, Path]) -> None:
    layers["system"].write_text("V=system\nS=system\n")
    layers["user"].write_text("V=user\nU=user\n")
    layers["app"].write_text("V=app\nA=app\n")
    layers["extra1"].write_text("V=extra1\nX1=extra1\n")
    layers["extra2"].write_text("V=extra2\nX2=extra2\n")
    files = [layers["extra1"], layers["extra2"]]
    got = collect_variables(layers["app_dir"], files, environ={"E": "env"})
    assert got == {"V": "extra2", "S": "system", "U": "user", "A": "app", "X1": "extra1", "X2": "extra2",
                   "E": "env"}
    assert collect_variables(layers["app_dir"], files, environ={"V": "env"})["V"] == "env"
    assert collect_variables(layers["app_dir"], [layers["extra2"], layers["extra1"]], environ={})["V"] == "extra1"


def test_missing_explicit_env_file_is_an_error(layers: dict[str, Path]) -> None:
    with pytest.raises(SpecError, match="env file not found"):
        collect_variables(layers["app_dir"], [layers["extra1"]], environ={})


def test_default_environ_is_process_environment(layers: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBX_TEST_VAR", "from-os")
    assert collect_variables(layers["app_dir"])["SBX_TEST_VAR"] == "from-os"


def test_render_syntax() -> None:
    variables = {"A": "1", "EMPTY": ""}
    assert render("x: ${A}", variables, "f") == "x: 1"
    assert render("x: ${B:-dflt} ${A:-dflt} ${EMPTY:-e}", variables, "f") == "x: dflt 1 e"
    assert render("x: ${EMPTY}|", variables, "f") == "x: |"
    assert render("x: $$ $${A} $HOME a$b", variables, "f") == "x: $ ${A} $HOME a$b"
    assert render("x: ${B:-}", variables, "f") == "x: "


def test_render_undefined_names_line_and_variable() -> None:
    with pytest.raises(SpecError) as info:
        render("a: 1\nb: ${NOPE}\nc: 'x ${ALSO_NOPE} y'\n", {}, "app.yaml")
    err = info.value
    assert [(i.line, i.file) for i in err.issues] == [(2, "app.yaml"), (3, "app.yaml")]
    assert "app.yaml:2: undefined variable ${NOPE}" in str(err)
    assert "${ALSO_NOPE}" in str(err)


def test_render_malformed_placeholders() -> None:
    for text in ("a: ${1X}\n", "a: ${A B}\n", "a: ${OPEN\n"):
        with pytest.raises(SpecError) as info:
            render(text, {"A": "1"}, "f")
        assert info.value.line == 1


def test_render_leaves_comment_lines_alone() -> None:
    text = "# use ${WHATEVER} or ${bad thing}\na: ${A}  # ${A}\n"
    assert render(text, {"A": "1"}, "f") == "# use ${WHATEVER} or ${bad thing}\na: 1  # 1\n"


def test_load_app_templating_end_to_end(layers: dict[str, Path]) -> None:
    layers["app"].write_text("TAG=v1\nACTION_CHECK=\n")
    app_file = layers["app_dir"] / "app.yaml"
    app_file.write_text("name: t-${TAG}\nmodules:\n  m:\n    image: img:${TAG}\n"
                        "    environments: {CHECK: '${ACTION_CHECK}', N: '${N:-3}'}\n"
                        "    start_task: ${BODY}\n")
    app = load_app(app_file, environ={"BODY": "hello,world"})
    assert app.name == "t-v1" and app.modules["m"].image == "img:v1"
    assert app.modules["m"].environments == {"CHECK": "", "N": "3"}
    assert app.modules["m"].start_task == ["hello,world"]


def test_load_app_undefined_variable_line(layers: dict[str, Path]) -> None:
    app_file = layers["app_dir"] / "app.yaml"
    app_file.write_text("name: a\nmodules:\n  m:\n    image: img:${TAG}\n")
    with pytest.raises(SpecError) as info:
        load_app(app_file, environ={})
    err = info.value
    assert (err.line, err.file) == (4, str(app_file)) and "${TAG}" in err.message


def test_load_app_reports_env_file_errors(layers: dict[str, Path]) -> None:
    layers["app"].write_text("OK=1\nbroken line\n")
    app_file = layers["app_dir"] / "app.yaml"
    app_file.write_text("name: a\nmodules:\n  m: {image: x}\n")
    with pytest.raises(SpecError) as info:
        load_app(app_file, environ={})
    assert (info.value.file, info.value.line) == (str(layers["app"]), 2)
