"""Safe expressions over the facts of an attempt, for retry rules' `when:`.

Parsed with `ast` and evaluated by walking a whitelisted tree (never `eval`). Allowed:

| element | examples |
| --- | --- |
| names | `exit_code` (int), `duration` (seconds, float), `attempt` (1-based int), `timed_out` (bool) |
| constants | `2`, `0.5`, `True`, `False` |
| comparisons | `==` `!=` `<` `<=` `>` `>=`, chained (`1 < exit_code < 10`) |
| membership | `exit_code in (1, 14)`, `exit_code not in [2, 3]` (tuple/list literal on the right) |
| logic | `and`, `or`, `not` |
| arithmetic | `+ - * / %`, unary `-` and `+` |

Anything else (attribute access, calls, subscripts, strings, `**`, lambdas...) is rejected when the
expression is compiled, so a spec error is raised at load time. An expression that fails at run time
(e.g. `% 0`) does not match.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMES = ("exit_code", "duration", "attempt", "timed_out")
MAX_LENGTH = 500
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_DESCRIBE = {
    ast.Attribute: "attribute access", ast.Call: "function calls", ast.Subscript: "subscripts",
    ast.Lambda: "lambdas", ast.Pow: "'**'", ast.FloorDiv: "'//'", ast.IfExp: "conditional expressions",
    ast.NamedExpr: "':='", ast.JoinedStr: "strings", ast.Dict: "dicts", ast.Set: "sets",
    ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions", ast.Is: "'is'", ast.IsNot: "'is not'",
    ast.Tuple: "tuples outside 'in (...)'", ast.List: "lists outside 'in [...]'",
}


class ExprError(ValueError):
    """An expression that is not allowed or does not parse."""


@dataclass(frozen=True)
class Expr:
    """A validated expression; `matches(facts)` evaluates it to a bool."""

    text: str
    tree: ast.Expression = field(repr=False, compare=False)

    def matches(self, facts: Mapping[str, Any]) -> bool:
        """True if the expression holds for `facts` (a map of every name in NAMES); False on errors."""
        try:
            return bool(_eval(self.tree.body, facts))
        except (ArithmeticError, TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return self.text


def compile_expr(text: str) -> Expr:
    """Parse and check `text`; ExprError says what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("expected a non-empty expression string")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"bad expression {text!r}: {exc.msg}") from None
    _check(tree.body, text)
    return Expr(text.strip(), tree)


def _reject(node: ast.AST, text: str) -> ExprError:
    what = _DESCRIBE.get(type(node), type(node).__name__)
    return ExprError(f"bad expression {text!r}: {what} not allowed")


def _check(node: ast.AST, text: str, in_rhs: bool = False) -> None:
    """Raise ExprError unless every node of the tree is whitelisted."""
    if isinstance(node, ast.Name):
        if node.id not in NAMES:
            raise ExprError(f"bad expression {text!r}: unknown name {node.id!r} (use {', '.join(NAMES)})")
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, bool | int | float):
            raise ExprError(f"bad expression {text!r}: only numbers and True/False are allowed as constants")
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, text)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise _reject(node.op, text)
        _check(node.operand, text)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise _reject(node.op, text)
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.Compare):
        _check(node.left, text)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARE:
                raise _reject(op, text)
            membership = isinstance(op, ast.In | ast.NotIn)
            if membership and not isinstance(right, ast.Tuple | ast.List):
                raise ExprError(f"bad expression {text!r}: 'in' needs a literal list or tuple, e.g. (1, 2)")
            _check(right, text, in_rhs=membership)
    elif isinstance(node, ast.Tuple | ast.List) and in_rhs:
        for item in node.elts:
            _check(item, text)
    else:
        raise _reject(node, text)


def _eval(node: ast.AST, facts: Mapping[str, Any]) -> Any:
    """Evaluate an already-checked node."""
    if isinstance(node, ast.Name):
        return facts[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, facts) for v in node.values)
        return any(_eval(v, facts) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, facts))
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, facts), _eval(node.right, facts))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, facts)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, facts)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_eval(item, facts) for item in node.elts)
    raise TypeError(f"unexpected node {type(node).__name__}")  # unreachable after _check
