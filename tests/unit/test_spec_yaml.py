"""YAML parsing with line numbers and YAML 1.2 scalars."""

from __future__ import annotations

import pytest

from scalebox_stream.spec import SpecError
from scalebox_stream.spec.yamlsrc import parse_yaml


def test_lines_of_keys_and_items() -> None:
    data, lines = parse_yaml("a: 1\nb:\n  c: x\n  d:\n    - 1\n    - 2\n", "f")
    assert data == {"a": 1, "b": {"c": "x", "d": [1, 2]}}
    assert lines[("a",)] == 1 and lines[("b", "c")] == 3 and lines[("b", "d", 1)] == 6
    assert lines[()] == 1


def test_yaml_12_scalars() -> None:
    data, _ = parse_yaml("a: [1:3, 010, 0x1f, 0o17, yes, on, true, False, 1.5, .inf, ~, 2024-01-01]\n", "f")
    assert data["a"][:10] == ["1:3", 10, 31, 15, "yes", "on", True, False, 1.5, float("inf")]
    assert data["a"][10] is None
    assert str(data["a"][11]) == "2024-01-01"


def test_keys_are_text_as_written() -> None:
    data, _ = parse_yaml("on: 1\n123: 2\n", "f")
    assert data == {"on": 1, "123": 2}


def test_duplicate_keys_rejected_with_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("a: 1\nb: 2\na: 3\n", "f")
    assert (info.value.line, info.value.field) == (3, "a")


def test_merge_keys() -> None:
    data, lines = parse_yaml("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "f")
    assert data["m"] == {"x": 1, "y": 3} and lines[("m", "y")] == 4


def test_syntax_error_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "f.yaml")
    assert info.value.line == 3 and "YAML syntax error" in str(info.value)


def test_several_documents_rejected() -> None:
    with pytest.raises(SpecError, match="YAML"):
        parse_yaml("a: 1\n---\nb: 2\n", "f")


def test_empty_document() -> None:
    assert parse_yaml("# nothing\n", "f") == (None, {})
