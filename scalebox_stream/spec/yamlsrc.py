"""YAML parsing that remembers the line of every mapping key and sequence item.

The result is plain Python data plus a map `path -> line` (1-based), where a path is the tuple of keys
and indexes leading to a value, e.g. `("modules", "calc", "slots")`. Mapping keys are always strings
(the key's text as written). Scalars resolve as in YAML 1.2's core schema rather than PyYAML's 1.1:
`yes`/`no`/`on`/`off` stay strings, `010` is ten, and `1:3` is a string, not the base-60 number 63
(which would silently break retry rules such as `- 1:3`). Duplicate keys are an error.

Bounded input (`spec.limits`): the text is at most `MAX_APP_FILE_BYTES`, nesting at most `MAX_YAML_DEPTH`
levels (checked while composing, before any recursion can run away), and the document at most
`MAX_YAML_NODES` values once aliases are expanded (counted on the node graph, before any Python object
is built), so a "billion laughs" file fails at once. A recursive alias is an error. No string may hold
a NUL character.

With `variables`, `${VAR}` placeholders are substituted inside each string scalar (and mapping key)
after parsing, so a variable's value is always one value and can never add keys or modules. A plain
(unquoted) scalar is then resolved again as YAML would resolve the resulting text (`slots: ${N}` with
N=2 is the number 2); a quoted one stays a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecError, SpecIssue
from .limits import MAX_APP_FILE_BYTES, MAX_INT_DIGITS, MAX_YAML_DEPTH, MAX_YAML_NODES
from .templating import render

Path_ = tuple[str | int, ...]
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class SpecYamlLoader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 core-schema booleans and numbers, that refuses deep nesting."""

    def __init__(self, stream: str, file: str = "") -> None:
        super().__init__(stream)
        self.file = file
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """Compose one node, refusing to go deeper than MAX_YAML_DEPTH (PyYAML composes recursively)."""
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecError(self.file, mark.line + 1, "", f"nested more than {MAX_YAML_DEPTH} levels deep "
                                                             "(the limit, MAX_YAML_DEPTH)")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


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
    """YAML 1.2 integers: decimal (leading zeros allowed), 0o octal, 0x hex; at most MAX_INT_DIGITS digits."""
    text = str(loader.construct_scalar(node))
    if len(text) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(text)} digits (at most "
                                                            f"{MAX_INT_DIGITS}, MAX_INT_DIGITS)", node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


SpecYamlLoader.add_constructor(_INT, _construct_int)


def parse_yaml(text: str, file: str, variables: Mapping[str, str] | None = None) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document into (data, lines); raise SpecError with the line on any problem.

    With `variables`, substitute `${VAR}` placeholders inside string values (see the module docstring).
    """
    if len(text) > MAX_APP_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_APP_FILE_BYTES:
        raise SpecError(file, None, "", f"the file is over the limit of {MAX_APP_FILE_BYTES} bytes "
                                        "(MAX_APP_FILE_BYTES)")
    lines: dict[Path_, int] = {}
    issues: list[SpecIssue] = []
    loader: SpecYamlLoader | None = None
    try:
        loader = SpecYamlLoader(text, file)  # checks that every character is printable
        node = loader.get_single_node()
        if node is None:
            return None, lines
        _check_size(node, file)
        lines[()] = node.start_mark.line + 1
        data = _Converter(loader, lines, issues, file, variables).convert(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(file, mark.line + 1 if mark else None, "",
                        f"YAML syntax error: {problem}{_placeholder_hint(text, mark)}") from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError(file, line, "", f"YAML error: unacceptable character #x{exc.character:04x} "
                                        "(YAML files hold printable text only)") from None
    except yaml.YAMLError as exc:
        raise SpecError(file, None, "", f"YAML error: {exc}") from exc
    finally:
        if loader is not None:
            loader.dispose()
    if issues:
        raise SpecError.from_issues(issues)
    return data, lines


def _placeholder_hint(text: str, mark: Any) -> str:
    """A hint when the failing line holds an unquoted `${...}` (a flow collection ends a plain scalar at `{`)."""
    if mark is None:
        return ""
    line = text.split("\n")[mark.line] if mark.line < text.count("\n") + 1 else ""
    if "${" in line:
        return " (inside [...] or {...}, quote a placeholder: '${VAR}')"
    return ""


def _check_size(root: Node, file: str) -> None:
    """Refuse a recursive alias, or a document of more than MAX_YAML_NODES values once aliases are
    expanded; counted on the node graph (each node once), so it costs no more than the text itself."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise SpecError(file, node.start_mark.line + 1, "", "recursive alias: this value contains itself")
        open_.add(key)
        total = 1
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_YAML_NODES:
                    break
        if total > MAX_YAML_NODES:
            raise SpecError(file, node.start_mark.line + 1, "",
                            f"this value expands to more than {MAX_YAML_NODES} values through aliases "
                            "(the limit, MAX_YAML_NODES)")
        open_.discard(key)
        sizes[key] = total
        return total

    size(root)


class _Converter:
    """Turns nodes into Python data, recording lines, collecting issues, substituting variables."""

    def __init__(self, loader: SpecYamlLoader, lines: dict[Path_, int], issues: list[SpecIssue], file: str,
                 variables: Mapping[str, str] | None) -> None:
        self.loader, self.lines, self.issues, self.file, self.variables = loader, lines, issues, file, variables

    def convert(self, node: Node, path: Path_, depth: int) -> Any:
        """Turn a node into Python data, recording the line of every key and item under `path`."""
        if depth > MAX_YAML_DEPTH:
            self.issues.append(SpecIssue(self.file, node.start_mark.line + 1, _dotted(path),
                                         f"nested more than {MAX_YAML_DEPTH} levels deep once aliases are "
                                         "expanded (the limit, MAX_YAML_DEPTH)"))
            return None
        if isinstance(node, MappingNode):
            return _convert_mapping(self, node, path, depth)
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.convert(item, path + (index,), depth + 1))
            return items
        return self.scalar(node, path)

    def scalar(self, node: Node, path: Path_) -> Any:
        """A scalar's value, with placeholders substituted in strings; a NUL character is refused."""
        value = node.value
        if isinstance(node, ScalarNode) and node.tag == _STR and isinstance(value, str):
            text = self.text(value, node, path)
            if node.style is None and text != value:
                tag = self.loader.resolve(ScalarNode, text, (True, False))
                node = ScalarNode(tag, text, node.start_mark, node.end_mark, node.style)
            elif text != value:
                return text
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, ArithmeticError, AttributeError, LookupError) as exc:  # `!!int abc`...
            tag = str(node.tag).rsplit(":", 1)[-1]
            self.issues.append(SpecIssue(self.file, node.start_mark.line + 1, _dotted(path),
                                         f"cannot read {str(value)[:40]!r} as {tag}: {exc}"))
            return None

    def text(self, value: str, node: Node, path: Path_) -> str:
        """`value` with its placeholders substituted (when variables are given); NUL and text that is not
        UTF-8 (from a variable's value) are refused."""
        if self.variables is not None and "$" in value:
            first_line = node.start_mark.line + 1 + (1 if getattr(node, "style", None) in ("|", ">") else 0)
            try:
                value = render(value, self.variables, self.file, first_line=first_line)
            except SpecError as exc:
                self.issues.extend(exc.issues)  # as `file:line: undefined variable ...`, the line is enough
                return value
        if problem := _text_problem(value):
            self.issues.append(SpecIssue(self.file, node.start_mark.line + 1, _dotted(path), problem))
        return value


def _text_problem(value: str) -> str | None:
    """Why a string from the file (or a variable) cannot be used: a NUL character, or not UTF-8."""
    if "\x00" in value:
        return "contains a NUL character (\\0), which no program argument, variable or task body can carry"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (a variable's value holds undecodable bytes)"
    return None


def _convert_mapping(conv: _Converter, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
    """A mapping: own keys must be unique and override keys merged in with `<<`."""
    own = {id(k) for k, _ in node.value if k.tag != _MERGE}
    conv.loader.flatten_mapping(node)
    out: dict[str, Any] = {}
    seen_own: set[str] = set()
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, ScalarNode):
            conv.issues.append(SpecIssue(conv.file, line, _dotted(path), "mapping keys must be plain strings"))
            continue
        key = conv.text(str(key_node.value), key_node, path)
        is_own = id(key_node) in own
        if is_own and key in seen_own:
            conv.issues.append(SpecIssue(conv.file, line, _dotted(path + (key,)), f"duplicate key {key!r}"))
            continue
        if key in out and not is_own:
            continue  # an earlier merged mapping wins over a later one
        if is_own:
            seen_own.add(key)
        conv.lines[path + (key,)] = line
        out[key] = conv.convert(value_node, path + (key,), depth + 1)
    return out


def _dotted(path: Path_) -> str:
    """`("modules", "calc", "slots")` -> `modules.calc.slots`."""
    return ".".join(str(p) for p in path)
