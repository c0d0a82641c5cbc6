"""The safe `when:` expression language: what it accepts, what it evaluates, what it rejects."""

from __future__ import annotations

import pytest

from scalebox_stream.policy.expr import MAX_LENGTH, ExprError, compile_expr

FACTS = {"exit_code": 2, "duration": 3.5, "attempt": 1, "timed_out": False}


@pytest.mark.parametrize(("text", "expected"), [
    ("exit_code == 2", True),
    ("exit_code == 2 and duration < 5", True),
    ("exit_code != 2 or timed_out", False),
    ("not timed_out", True),
    ("timed_out == False", True),
    ("exit_code in (1, 2, 3)", True),
    ("exit_code in [1, 3]", False),
    ("exit_code not in (1, 3)", True),
    ("1 < exit_code < 3", True),
    ("1 < exit_code < 2", False),
    ("duration * 2 + 1 >= 8", True),
    ("exit_code % 2 == 0", True),
    ("exit_code / 4 == 0.5", True),
    ("-exit_code == -2 and +attempt == 1", True),
    ("attempt - 1 < 3", True),
    ("exit_code in (-2 + 4, 9)", True),
    ("exit_code % 0 == 0", False),       # a run-time error does not match
    ("True", True),
    ("0", False),
])
def test_evaluates(text: str, expected: bool) -> None:
    assert compile_expr(text).matches(FACTS) is expected


@pytest.mark.parametrize(("text", "words"), [
    ("__import__('os')", "function calls"),
    ("__import__('os').system('true')", "function calls"),
    ("exit_code.__class__ == 1", "attribute access"),
    ("exit_code.real == 2", "attribute access"),
    ("open('/etc/passwd')", "function calls"),
    ("len((1,)) == 1", "function calls"),
    ("os", "unknown name 'os'"),
    ("exit_code == x", "unknown name 'x'"),
    ("__builtins__", "unknown name"),
    ("(1, 2)[0] == 1", "subscripts"),
    ("exit_code == 'a'", "constants"),
    ("exit_code ** 2 == 4", "'**'"),
    ("exit_code // 2 == 1", "'//'"),
    ("exit_code is 2", "'is'"),
    ("lambda: 1", "lambdas"),
    ("1 if timed_out else 0", "conditional"),
    ("(y := 1)", "':='"),
    ("[c for c in (1, 2)]", "comprehensions"),
    ("exit_code in {1, 2}", "literal list or tuple"),
    ("exit_code in exit_code", "literal list or tuple"),
    ("(1, 2) == (1, 2)", "tuples outside"),
    ("exit_code & 1", "BitAnd"),
    ("exit_code in ('a',)", "constants"),
    ("exit_code ==", "bad expression"),
    ("exit_code = 2", "bad expression"),
    ("", "non-empty"),
    ("x" * (MAX_LENGTH + 1), "longer than"),
])
def test_rejects(text: str, words: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(text)
    assert words in str(info.value)


def test_text_is_kept() -> None:
    expr = compile_expr("  exit_code == 1 ")
    assert str(expr) == expr.text == "exit_code == 1"
    assert expr == compile_expr("exit_code == 1")
