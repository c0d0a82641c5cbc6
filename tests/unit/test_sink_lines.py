"""Parsing of the sink-tasks.txt line forms, and the limits on a sink file."""

import re

import pytest

from scalebox_stream.agent.limits import MAX_SINK_FILE_BYTES, MAX_SINK_LINE_BYTES, MAX_SINK_LINES
from scalebox_stream.agent.sink import SinkLineError, SinkMessage, parse_sink_file, parse_sink_line, read_sink_file

MODULES = {"calc", "router"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("42", SinkMessage("42")),
        ("000000001_000000100", SinkMessage("000000001_000000100")),
        ('42,{"len":"100"}', SinkMessage("42", headers={"len": "100"})),
        ("calc,000000001_000000100", SinkMessage("000000001_000000100", "calc")),
        ('calc,1_100,{"len":"100","n":3}', SinkMessage("1_100", "calc", {"len": "100", "n": "3"})),
        ("other,thing", SinkMessage("other,thing")),
        ('{"a":1,"b":[1,2]}', SinkMessage('{"a":1,"b":[1,2]}')),
        ("calc,a,b", SinkMessage("a,b", "calc")),
        ("body,{not json}", SinkMessage("body,{not json}")),
        ("  ", None),
    ],
)
def test_line_forms(line, expected):
    assert parse_sink_line(line, MODULES) == expected


def test_empty_body_is_an_error():
    with pytest.raises(SinkLineError, match="empty task body"):
        parse_sink_line("calc,", MODULES)
    with pytest.raises(SinkLineError, match="empty task body"):
        parse_sink_line('calc,,{"a":"1"}', MODULES)


def test_file_skips_blank_lines_and_keeps_order():
    text = "calc,1_10\n\n  \ncalc,11_20\r\nrouter,done\n"
    assert [m.body for m in parse_sink_file(text, MODULES)] == ["1_10", "11_20", "done"]


def test_error_names_line():
    with pytest.raises(SinkLineError, match="line 2"):
        parse_sink_file("ok\ncalc,\n", MODULES)


def test_lines_split_on_newline_only_keeping_other_separators_in_bodies():
    text = "a\x0bb\nc\x85d\r\ne\u2028f\x0c\x1cg\r\n"
    assert [m.body for m in parse_sink_file(text, MODULES)] == ["a\x0bb", "c\x85d", "e\u2028f\x0c\x1cg"]


def test_read_sink_file_keeps_separators_inside_bodies(tmp_path):
    (tmp_path / "sink-tasks.txt").write_bytes("calc,x\x0by\u2028z\r\n\x85\n".encode())
    assert read_sink_file(tmp_path, MODULES) == [SinkMessage("x\x0by\u2028z", "calc"), SinkMessage("\x85")]


def test_too_many_lines_is_an_error_naming_the_count_and_the_limit(tmp_path):
    (tmp_path / "sink-tasks.txt").write_text("x\n" * 100_000)
    with pytest.raises(SinkLineError, match=f"^sink-tasks.txt has 100000 lines; the limit is {MAX_SINK_LINES}$"):
        read_sink_file(tmp_path, MODULES)


def test_blank_lines_do_not_count_against_the_limit(tmp_path):
    (tmp_path / "sink-tasks.txt").write_text("\n" * (2 * MAX_SINK_LINES) + "x\n" * MAX_SINK_LINES)
    assert len(read_sink_file(tmp_path, MODULES)) == MAX_SINK_LINES


def test_too_long_a_line_is_an_error_naming_it(tmp_path):
    (tmp_path / "sink-tasks.txt").write_bytes(b"ok\n" + b"y" * 2_000_000 + b"\n")
    with pytest.raises(SinkLineError, match=f"^sink-tasks.txt line 2 is 2000000 bytes; the limit is "
                                            f"{MAX_SINK_LINE_BYTES}$"):
        read_sink_file(tmp_path, MODULES)
    (tmp_path / "sink-tasks.txt").write_bytes(b"y" * MAX_SINK_LINE_BYTES)
    assert read_sink_file(tmp_path, MODULES) == [SinkMessage("y" * MAX_SINK_LINE_BYTES)]


def test_too_large_a_file_is_an_error_without_reading_it_all(tmp_path):
    with open(tmp_path / "sink-tasks.txt", "wb") as f:
        f.truncate(1 << 30)
    with pytest.raises(SinkLineError, match=f"^sink-tasks.txt is {1 << 30} bytes; the limit is {MAX_SINK_FILE_BYTES}$"):
        read_sink_file(tmp_path, MODULES)


def test_a_sink_file_that_is_a_link_is_an_error(tmp_path):
    (tmp_path / "secret").write_text("calc,secret\n")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "sink-tasks.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(SinkLineError, match="^sink-tasks.txt is a symbolic link: not read$"):
        read_sink_file(tmp_path / "work", MODULES)


def test_a_missing_or_directory_sink_file_emits_nothing(tmp_path):
    assert read_sink_file(tmp_path, MODULES) == []
    (tmp_path / "sink-tasks.txt").mkdir()
    assert read_sink_file(tmp_path, MODULES) == []


@pytest.mark.parametrize(("line", "fault"), [
    ("a\x00b", "the task body contains a NUL byte"),
    ('x,{"../k":"v"}', "bad header key '../k'"),
    ('x,{"k":"' + "v" * 20000 + '"}', "the headers are 20008 bytes as JSON, over the limit of 16384 bytes"),
])
def test_a_line_the_next_agent_would_refuse_fails_its_parent(line: str, fault: str) -> None:
    with pytest.raises(SinkLineError, match=re.escape(fault)):
        parse_sink_line(line, ["m"])
