"""Parsing of the sink-tasks.txt line forms."""

import pytest

from scalebox_stream.agent.sink import SinkLineError, SinkMessage, parse_sink_file, parse_sink_line

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
