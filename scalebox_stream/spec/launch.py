"""Scalebox launch templates (`command: docker run -d --network=host {{ENVS}} {{VOLUMES}} {{IMAGE}}`) and
per-slot expressions.

In Scalebox a module's `command` is the command line that starts a slot's container, not the program run
inside it. Its placeholders expand, per slot, to:

| placeholder | expands to |
| --- | --- |
| `{{ENVS}}` | `-e KEY=value` for each of the module's environment variables (and the standard ones) |
| `{{VOLUMES}}` | `-v src:dst[:mode]` for each volume, the standard mounts and `code_path` at `/app/bin` |
| `{{IMAGE}}` | the module's image (`docker://{{IMAGE}}` keeps its prefix) |
| `{~expr~}` | an integer expression over `n`, the slot's index on its host from 0: `{~n~}`, `{~n%2+128~}` |
| `((@seq))` | the same as `{~n~}` |
| `((@p:name))` | the slot parameter `name`; slots here have no parameters, so it expands to the empty string |
| `((@v:name))` | the global variable `name`; not available here yet, so it expands to the empty string |

`parse_launch` reads the template into a `LaunchTemplate` (engine, network, tmpfs, `-e` variables, the
other options kept in order); `LaunchTemplate.render` expands it for slot `n`. The options that select the
engine, the network and a tmpfs `/work` are honoured through the module's `executor`, `network` and
`tmpfs_workdir`; the rest are kept in the model for the executor (see `LaunchTemplate.unapplied`).
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .limits import MAX_SLOT_EXPR_CHARS

PLACEHOLDERS = ("{{ENVS}}", "{{VOLUMES}}", "{{IMAGE}}")
ENGINES = {"docker": "docker", "podman": "podman", "singularity": "apptainer", "apptainer": "apptainer"}
NETWORKS = ("none", "bridge", "host")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SLOT_EXPR = re.compile(r"\{~(.*?)~\}")
_AT_EXPR = re.compile(r"\(\(@(seq|p:[A-Za-z0-9_.-]+|v:[A-Za-z0-9_.:-]+)\)\)")
_IGNORED_FLAGS = ("-d", "--detach", "--rm", "-it", "-i", "-t")


class LaunchTemplate(BaseModel):
    """A Scalebox launch template, read: what each part means to this engine."""

    model_config = ConfigDict(frozen=True)

    text: str
    engine: str
    """The executor the template's program selects: docker, podman or apptainer (for singularity too)."""
    network: str | None = None
    tmpfs: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """`-e KEY=value` given in the template itself (values may hold slot expressions)."""
    options: list[str] = Field(default_factory=list)
    """Other options, in order (`--device=/dev/kfd`, `--security-opt`, `seccomp=unconfined`...)."""
    args: list[str] = Field(default_factory=list)
    """Words after the image (the container's command, if the template gives one)."""
    slot_expressions: list[str] = Field(default_factory=list)

    def unapplied(self) -> list[str]:
        """The parts of the template the engine does not apply yet (for the loader's warning)."""
        parts = list(self.options)
        parts += [f"-e {key}={value}" for key, value in self.env.items()]
        if self.args:
            parts.append("container args " + " ".join(self.args))
        return parts

    def render(self, n: int, *, envs: Mapping[str, str], volumes: Sequence[str], image: str) -> list[str]:
        """The command line for slot `n`: placeholders and slot expressions expanded."""
        words: list[str] = []
        for word in shlex.split(self.text):
            if word == "{{ENVS}}":
                for key, value in envs.items():
                    words += ["-e", f"{key}={value}"]
            elif word == "{{VOLUMES}}":
                for volume in volumes:
                    words += ["-v", volume]
            else:
                words.append(expand_slot(word.replace("{{IMAGE}}", image), n))
        return words


def engine_of(text: str) -> str | None:
    """The executor a launch template's first word selects (`docker run ...` -> docker), or None."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    return ENGINES.get(words[0].rsplit("/", 1)[-1]) if words else None


def parse_launch(text: str) -> LaunchTemplate:
    """Read a launch template; ValueError naming the first problem."""
    for match in _PLACEHOLDER.finditer(text):
        if match.group(0) not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {match.group(0)!r} in the launch template "
                             f"(known: {', '.join(PLACEHOLDERS)})")
    if "{{IMAGE}}" not in text:
        raise ValueError("a Scalebox launch template needs {{IMAGE}}, e.g. 'docker run {{ENVS}} {{VOLUMES}} {{IMAGE}}'")
    expressions = [m.group(1).strip() for m in _SLOT_EXPR.finditer(text)]
    expressions += [m.group(0) for m in _AT_EXPR.finditer(text)]
    for expression in expressions:
        if not expression.startswith("(("):
            check_slot_expr(expression)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split the launch template: {exc}") from None
    engine = ENGINES.get(words[0].rsplit("/", 1)[-1]) if words else None
    if engine is None:
        raise ValueError(f"the launch template starts with {words[0]!r}: expected docker, podman, singularity or "
                         "apptainer")
    network: str | None = None
    tmpfs: list[str] = []
    env: dict[str, str] = {}
    options: list[str] = []
    args: list[str] = []
    rest = words[2:] if len(words) > 1 and words[1] in ("run", "exec") else words[1:]
    index = 0
    while index < len(rest):
        word = rest[index]
        if "{{IMAGE}}" in word:
            args = rest[index + 1:]
            break
        name, eq, value = word.partition("=")
        takes_value = name in ("--network", "--net", "--tmpfs", "-e", "--env")
        if takes_value and not eq:
            index += 1
            value = rest[index] if index < len(rest) else ""
        if name in ("--network", "--net"):
            network = value
            if value not in NETWORKS:
                raise ValueError(f"--network {value!r}: expected one of {', '.join(NETWORKS)}")
        elif name == "--tmpfs":
            tmpfs.append(value)
        elif name in ("-e", "--env"):
            key, _, text_value = value.partition("=")
            env[key] = text_value
        elif word not in PLACEHOLDERS and word not in _IGNORED_FLAGS:
            options.append(word)
        index += 1
    return LaunchTemplate(text=text, engine=engine, network=network, tmpfs=tmpfs, env=env, options=options,
                          args=args, slot_expressions=expressions)


def check_slot_expr(expression: str) -> None:
    """Refuse a slot expression that is not integer arithmetic over `n` (+ - * / %, parentheses)."""
    if len(expression) > MAX_SLOT_EXPR_CHARS:
        raise ValueError(f"the slot expression {{~{expression[:20]}...~}} is over the limit of {MAX_SLOT_EXPR_CHARS} "
                         "characters (MAX_SLOT_EXPR_CHARS)")
    for n in (0, 1, 7):
        eval_slot_expr(expression, n)


def eval_slot_expr(expression: str, n: int) -> int:
    """The value of `{~expression~}` for slot index `n`; ValueError if it is not integer arithmetic over n."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"bad slot expression {{~{expression}~}}: use n, whole numbers, + - * / % and "
                         "parentheses") from None
    return _eval(tree.body, n, expression)


def _eval(node: ast.AST, n: int, expression: str) -> int:
    """Evaluate one node of a slot expression: only n, integers and + - * / % (integer division)."""
    if isinstance(node, ast.Name) and node.id == "n":
        return n
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand, n, expression)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.FloorDiv
                                                  | ast.Mod):
        left, right = _eval(node.left, n, expression), _eval(node.right, n, expression)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise ValueError(f"bad slot expression {{~{expression}~}}: division by zero")
        return left // right if isinstance(node.op, ast.Div | ast.FloorDiv) else left % right
    raise ValueError(f"bad slot expression {{~{expression}~}}: use n, whole numbers, + - * / % and parentheses")


def expand_slot(text: str, n: int) -> str:
    """`text` with `{~expr~}` and `((@seq))` replaced by their value for slot `n`, and `((@p:...))` and
    `((@v:...))` by the empty string (no slot parameters or global variables here yet)."""
    text = _SLOT_EXPR.sub(lambda m: str(eval_slot_expr(m.group(1), n)), text)
    return _AT_EXPR.sub(lambda m: str(n) if m.group(1) == "seq" else "", text)
