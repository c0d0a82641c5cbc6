"""YAML parsing that remembers the line of every mapping key and sequence item.

The result is plain Python data plus a map `path -> line` (1-based), where a path is the tuple of keys
and indexes leading to a value, e.g. `("modules", "calc", "slots")`. Mapping keys are always strings
(the key's text as written). Scalars resolve as in YAML 1.2's core schema rather than PyYAML's 1.1:
`yes`/`no`/`on`/`off` stay strings, `010` is ten, and `1:3` is a string, not the base-60 number 63
(which would silently break retry rules such as `- 1:3`). Duplicate keys are an error.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecError, SpecIssue

Path_ = tuple[str | int, ...]
_MAX_DEPTH = 64
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class SpecYamlLoader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 core-schema booleans and numbers."""


SpecYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecYamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
SpecYamlLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
SpecYamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def _construct_int(loader: SpecYamlLoader, node: ScalarNode) -> int:
    """YAML 1.2 integers: decimal (leading zeros allowed), 0o octal, 0x hex."""
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


SpecYamlLoader.add_constructor(_INT, _construct_int)


def parse_yaml(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document into (data, lines); raise SpecError with the line on any problem."""
    loader = SpecYamlLoader(text)
    lines: dict[Path_, int] = {}
    issues: list[SpecIssue] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        lines[()] = node.start_mark.line + 1
        data = _convert(loader, node, (), lines, issues, file, 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(file, mark.line + 1 if mark else None, "", f"YAML syntax error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(file, None, "", f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    if issues:
        raise SpecError.from_issues(issues)
    return data, lines


def _convert(loader: SpecYamlLoader, node: Node, path: Path_, lines: dict[Path_, int],
             issues: list[SpecIssue], file: str, depth: int) -> Any:
    """Turn a node into Python data, recording the line of every key and item under `path`."""
    if depth > _MAX_DEPTH:
        issues.append(SpecIssue(file, node.start_mark.line + 1, _dotted(path), "nested too deeply"))
        return None
    if isinstance(node, MappingNode):
        return _convert_mapping(loader, node, path, lines, issues, file, depth)
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            items.append(_convert(loader, item, path + (index,), lines, issues, file, depth + 1))
        return items
    return loader.construct_object(node, deep=True)


def _convert_mapping(loader: SpecYamlLoader, node: MappingNode, path: Path_, lines: dict[Path_, int],
                     issues: list[SpecIssue], file: str, depth: int) -> dict[str, Any]:
    """A mapping: own keys must be unique and override keys merged in with `<<`."""
    own = {id(k) for k, _ in node.value if k.tag != _MERGE}
    loader.flatten_mapping(node)
    out: dict[str, Any] = {}
    seen_own: set[str] = set()
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, ScalarNode):
            issues.append(SpecIssue(file, line, _dotted(path), "mapping keys must be plain strings"))
            continue
        key = str(key_node.value)
        is_own = id(key_node) in own
        if is_own and key in seen_own:
            issues.append(SpecIssue(file, line, _dotted(path + (key,)), f"duplicate key {key!r}"))
            continue
        if key in out and not is_own:
            continue  # an earlier merged mapping wins over a later one
        if is_own:
            seen_own.add(key)
        lines[path + (key,)] = line
        out[key] = _convert(loader, value_node, path + (key,), lines, issues, file, depth + 1)
    return out


def _dotted(path: Path_) -> str:
    """`("modules", "calc", "slots")` -> `modules.calc.slots`."""
    return ".".join(str(p) for p in path)
