"""Perspective files: timestamps, byte counts, task-exec.json, text capping."""

import json

import pytest

from scalebox_stream.agent.perspective import (
    MAX_EXTRA_ATTRIBUTES_BYTES,
    PerspectiveError,
    cap_text,
    extra_attributes_json,
    parse_extra_attributes,
    parse_timestamp,
    parse_timestamp_lines,
    read_perspective,
)

BASE = 1698141600 * 1_000_000  # 2023-10-24T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-10-24T10:00:00Z", BASE),
        ("2023-10-24T10:00:00.123Z", BASE + 123000),
        ("2023-10-24T10:00:00.123456Z", BASE + 123456),
        ("2023-10-24T10:00:00.123456789Z", BASE + 123456),
        ("2023-10-24T18:00:00,5+08:00", BASE + 500000),
        ("2023-10-24T18:00:00.123456+0800", BASE + 123456),
        ("2023-10-24 10:00:00", BASE),
    ],
)
def test_timestamp_forms(text, expected):
    assert parse_timestamp(text) == expected


def test_timestamp_lines_with_labels_and_comma_fractions():
    lines = "2023-10-24T10:00:00Z,begin\n\n2023-10-24T10:00:00,25Z,end\n2023-10-24T10:00:01Z\n"
    assert parse_timestamp_lines(lines) == [(BASE, "begin"), (BASE + 250000, "end"), (BASE + 1_000_000, None)]


def test_bad_timestamp_names_line():
    with pytest.raises(PerspectiveError, match="line 2"):
        parse_timestamp_lines("2023-10-24T10:00:00Z\nyesterday,label")


def test_read_perspective_files(tmp_path):
    (tmp_path / "a.dat").write_bytes(b"x" * 100)
    (tmp_path / "b.dat").write_bytes(b"y" * 7)
    (tmp_path / "input-files.txt").write_text("a.dat\n")
    (tmp_path / "output-files.txt").write_text(f"{tmp_path / 'b.dat'}\n")
    (tmp_path / "custom-out.txt").write_bytes(b"25\n")
    (tmp_path / "timestamps.txt").write_text("2023-10-24T10:00:00Z,t0\n")
    p = read_perspective(tmp_path)
    assert (p.input_bytes, p.output_bytes, p.custom_out) == (100, 7, b"25\n")
    assert p.timestamps == [(BASE, "t0")]
    assert p.problems == []


def test_task_exec_json_and_problems_are_collected(tmp_path):
    (tmp_path / "task-exec.json").write_text(json.dumps({
        "statusCode": 0, "inputBytes": 10, "outputBytes": 20, "messageText": "hello",
        "timestamps": ["2023-10-24T10:00:00Z,a", {"timestamp": "2023-10-24T10:00:01Z", "label": "b"}],
    }))
    (tmp_path / "input-files.txt").write_text("missing.dat\n")
    p = read_perspective(tmp_path)
    assert (p.status_code, p.message_text, p.output_bytes) == (0, "hello", 20)
    assert p.timestamps == [(BASE, "a"), (BASE + 1_000_000, "b")]
    assert p.input_bytes == 10
    assert len(p.problems) == 1 and "missing.dat" in p.problems[0]


def test_corrupt_task_exec_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "task-exec.json").write_text("{not json")
    assert read_perspective(tmp_path).problems


def test_cap_text_keeps_the_right_end_and_escapes_invalid_utf8():
    data = b"A" * 10 + b"\xff\xfe" + b"Z" * 10
    assert cap_text(data, 5, "HEAD") == "ZZZZZ"
    assert cap_text(data, 5, "TAIL") == "AAAAA"
    assert cap_text(data, 100) == "A" * 10 + "\\xff\\xfe" + "Z" * 10


def test_read_perspective_opens_only_the_listed_files(tmp_path):
    (tmp_path / "custom-out.txt").write_bytes(b"kept\n")
    (tmp_path / "timestamps.txt").write_text("2023-10-24T10:00:00Z,t0\n")
    p = read_perspective(tmp_path, names={"custom-out.txt"})
    assert (p.custom_out, p.timestamps) == (b"kept\n", [])


def test_a_perspective_file_that_is_a_directory_is_skipped(tmp_path):
    (tmp_path / "custom-out.txt").mkdir()
    (tmp_path / "timestamps.txt").mkdir()
    p = read_perspective(tmp_path)
    assert (p.custom_out, p.timestamps, p.problems) == (b"", [], [])


def test_a_missing_work_dir_reads_as_empty(tmp_path):
    p = read_perspective(tmp_path / "gone")
    assert (p.custom_out, p.status_code, p.problems) == (b"", None, [])


def test_text_no_event_or_table_could_hold_is_escaped(tmp_path):
    """A NUL would make PostgreSQL refuse the report (the task would look running forever); a lone surrogate
    could not be encoded at all."""
    assert cap_text(b"before\x00after", 100) == "before\\x00after"
    (tmp_path / "task-exec.json").write_text(json.dumps({
        "messageText": "a\x00b\udcff", "timestamps": [{"timestamp": "2023-10-24T10:00:00Z", "label": "l\x00"}]}))
    (tmp_path / "timestamps.txt").write_bytes(b"2023-10-24T10:00:01Z,t\x00\n")
    p = read_perspective(tmp_path)
    assert p.message_text == "a\\x00b\\udcff"
    assert p.timestamps == [(BASE, "l\\x00"), (BASE + 1_000_000, "t\\x00")]


def test_extra_attributes_as_a_json_object_or_key_value_lines(tmp_path):
    (tmp_path / "extra-attributes.txt").write_text('{"gpu": 3, "tags": ["a", "b"], "ok": true}\n')
    assert read_perspective(tmp_path).extra_attributes == {"gpu": 3, "tags": ["a", "b"], "ok": True}
    (tmp_path / "extra-attributes.txt").write_text("# written by run.sh\nnode = n-01\n\nrange=1=5\n")
    p = read_perspective(tmp_path)
    assert (p.extra_attributes, p.problems) == ({"node": "n-01", "range": "1=5"}, [])
    (tmp_path / "extra-attributes.txt").write_text("\n")
    assert read_perspective(tmp_path).extra_attributes is None


@pytest.mark.parametrize(("text", "why"), [
    ('{"a": 1,', "not a JSON object"),
    ("[1, 2]", "line 1 is not key=value"),
    ("a=1\nno equals sign\n", "line 2 is not key=value"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": 1e999}', "out of range"),
    ('{"a":' + "[" * 40 + "1" + "]" * 40 + "}", "nested deeper"),
])
def test_a_malformed_extra_attributes_file_is_a_warning_not_a_failure(tmp_path, text, why):
    (tmp_path / "extra-attributes.txt").write_text(text)
    p = read_perspective(tmp_path)
    assert p.extra_attributes is None and p.error is None
    assert len(p.problems) == 1 and p.problems[0].startswith("extra-attributes.txt: ")
    assert why in p.problems[0] and p.problems[0].endswith("; not kept")
    with pytest.raises(PerspectiveError):
        parse_extra_attributes(text)


def test_an_oversized_extra_attributes_file_is_not_read(tmp_path):
    (tmp_path / "extra-attributes.txt").write_text("k=" + "v" * MAX_EXTRA_ATTRIBUTES_BYTES)
    p = read_perspective(tmp_path)
    assert p.extra_attributes is None and p.error is None
    assert p.problems == [f"extra-attributes.txt is larger than {MAX_EXTRA_ATTRIBUTES_BYTES} bytes: not read"]


def test_extra_attributes_json_is_what_jsonb_accepts_and_is_redacted():
    assert extra_attributes_json(None) is None and extra_attributes_json({}) is None
    text = extra_attributes_json({"k\x00": "a\x00b\udcff", "n": [1.5, None, {"pw": "hunter2"}]},
                                 lambda s: s.replace("hunter2", "[secret]"))
    assert json.loads(text) == {"k\\x00": "a\\x00b\\udcff", "n": [1.5, None, {"pw": "[secret]"}]}
    assert "\\u0000" not in text and " " not in text
