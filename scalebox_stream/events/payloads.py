"""Typed event payloads: one class per record in `schemas/`, held equal to the `.avsc` files by a unit test.

A payload keeps its fields in one dict, in the form Avro writes (nested records as dicts), behind read-only
attributes: encoding hands that dict to fastavro as it is and decoding wraps fastavro's dict, so typing
the payloads copies nothing on the hot path. A read-only mapping view (`p["x"]`, `p.get`, `p.keys()`,
`p.items()`, `**p`) serves readers written against the dict payloads of before.
"""

import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, dataclass_transform

NAMESPACE = "sbx.events"

Long = Annotated[int, "long"]
"""An Avro long (a plain `int` annotation is an Avro int)."""

_MISSING: Any = object()
_FRESH: Any = object()  # the parameter default of a list or map field: each payload gets its own empty one


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a record: its name, Python annotation, default (`MISSING` if none) and nested record."""

    MISSING: ClassVar[Any] = _MISSING

    name: str
    annotation: Any
    default: Any
    nested: "type[Record] | None" = None
    """The record type of a list field's items, if they are records."""


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Record:
    """An Avro record with typed, read-only fields declared as class annotations (with defaults as values).

    Fields are properties without setters and subclasses declare `__slots__ = ()`, so a payload takes no
    assignment; only its private `_avro` dict could be replaced."""

    __slots__ = ("_avro",)
    NAME: ClassVar[str]
    """The record's name in `schemas/` (without namespace)."""
    FULL_NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()
    _avro: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__slots__" not in cls.__dict__:  # without, instances would take any new attribute
            raise TypeError(f"record {cls.__name__} must declare __slots__ = ()")
        cls.NAME = cls.__name__
        cls.FULL_NAME = f"{NAMESPACE}.{cls.__name__}"
        fields = []
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if typing.get_origin(annotation) is ClassVar:
                continue
            args = typing.get_args(annotation)
            nested = args[0] if typing.get_origin(annotation) is list and _is_record(args[0]) else None
            fields.append(FieldSpec(name, annotation, cls.__dict__.get(name, _MISSING), nested))
            setattr(cls, name, _nested_property(name, nested) if nested else _property(name))
        cls.FIELDS = tuple(fields)
        cls.__init__ = _make_init(cls.FIELDS)  # type: ignore[method-assign]
        cls.__init__.__qualname__ = f"{cls.__qualname__}.__init__"

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> typing.Self:
        """The record of a dict decoded by fastavro (every field present; taken, not copied)."""
        obj = object.__new__(cls)
        obj._avro = record
        return obj

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro writes it (shared with this payload: do not change it)."""
        return self._avro

    def replace(self, **changes: Any) -> typing.Self:
        """A copy with some fields changed."""
        return type(self)(**{**self._avro, **changes})

    def __getitem__(self, key: str) -> Any:
        return self._avro[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The field `key` in the Avro form, or `default` if the record has no such field."""
        return self._avro.get(key, default)

    def keys(self) -> typing.KeysView[str]:
        """The field names, in schema order."""
        return self._avro.keys()

    def items(self) -> typing.ItemsView[str, Any]:
        """(field, value in the Avro form) pairs, in schema order."""
        return self._avro.items()

    def __contains__(self, key: object) -> bool:
        return key in self._avro

    def __eq__(self, other: object) -> bool:
        """Equal to a record of the same class, or to a plain dict of its Avro form (a dict payload of before)."""
        if type(other) is dict:
            return self._avro == other
        return type(other) is type(self) and other._avro == self._avro  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # fields hold lists and maps

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._avro.items())})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self).from_avro, (self._avro,)


def _is_record(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Record)


def _property(name: str) -> property:
    def get(self: Record) -> Any:
        return self._avro[name]
    return property(get)


def _nested_property(name: str, nested: type[Record]) -> property:
    def get(self: Record) -> list[Record]:
        return [nested.from_avro(item) for item in self._avro[name]]
    return property(get, doc=f"The {nested.__name__} records of `{name}` (a new list on each access).")


def _avro_items(items: list[Any]) -> list[Any]:
    """A nested list field in the Avro form: records as their dicts."""
    return [item._avro if isinstance(item, Record) else item for item in items]


def _make_init(fields: tuple[FieldSpec, ...]) -> Any:
    """A keyword-only `__init__` that builds the Avro dict in one expression (as dataclasses do, by source)."""
    namespace: dict[str, Any] = {"_FRESH": _FRESH, "_avro_items": _avro_items}
    params, values = [], []
    for f in fields:
        value = f.name
        if f.default is _MISSING:
            params.append(f.name)
        elif isinstance(f.default, list | dict):
            params.append(f"{f.name}=_FRESH")
            value = f"({type(f.default).__name__}() if {f.name} is _FRESH else {f.name})"
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        if f.nested is not None:
            value = f"([] if {f.name} is _FRESH else _avro_items({f.name}) if {f.name} else {f.name})"
        values.append(f"{f.name!r}: {value}")
    signature = f"self, *, {', '.join(params)}" if params else "self"
    source = (f"def __init__({signature}):\n"
              f"    self._avro = {{{', '.join(values)}}}\n")
    exec(source, namespace)  # the source is built from the field names above
    return namespace["__init__"]


class Payload(Record):
    """The payload of one event type (`NAME` is the event type)."""

    __slots__ = ()
    BY_NAME: ClassVar[dict[str, "type[Payload]"]] = {}
    """Every payload class by event type."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Payload.BY_NAME[cls.NAME] = cls


# ----- records, in the order of the envelope's payload union -------------------------------------------------


class UserTimestamp(Record):
    """One user timestamp."""

    __slots__ = ()
    at: Long
    label: str | None = None


class TaskCreated(Payload):
    """A task was created for a module (CLI, start task or a parent's output)."""

    __slots__ = ()
    body: str
    headers: dict[str, str] = {}
    parent_task_id: str | None = None
    not_before: Long | None = None
    topic: str = ""
    task_created_at: Long = 0


class TaskAccepted(Payload):
    """An agent took the task into one of its slots."""

    __slots__ = ()
    agent: str
    slot: int
    topic: str = ""
    partition: int = -1
    offset: Long = -1


class TaskStarted(Payload):
    """The user program started (carrying the acceptance if no TaskAccepted went out before)."""

    __slots__ = ()
    agent: str
    slot: int
    executor: str
    image: str | None = None
    container_id: str | None = None
    started_at: Long
    admission_refusals: int = 0
    accepted_at: Long | None = None
    topic: str = ""
    partition: int = -1
    offset: Long = -1


class TaskFinished(Payload):
    """An attempt ended; carries the attempt's perspective."""

    __slots__ = ()
    agent: str
    slot: int
    executor: str
    image: str | None = None
    container_id: str | None = None
    outcome: str
    exit_code: int
    signal: int | None = None
    timed_out: bool = False
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    custom_out: str = ""
    message_text: str | None = None
    stdout_bytes: Long = 0
    stderr_bytes: Long = 0
    status_code: int | None = None
    input_bytes: Long | None = None
    output_bytes: Long | None = None
    read_bytes: Long | None = None
    write_bytes: Long | None = None
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    peak_memory_bytes: Long | None = None
    started_at: Long
    finished_at: Long
    user_timestamps: list[UserTimestamp] = []
    emitted_task_ids: list[str] = []
    emitted_modules: list[str] = []
    extra_attributes: str | None = None


class TaskRetryScheduled(Payload):
    """A failed attempt will be retried."""

    __slots__ = ()
    rule: str
    delay_s: float
    next_attempt: int


class TaskSucceeded(Payload):
    """Terminal: the task succeeded."""

    __slots__ = ()
    attempts: int


class TaskFailed(Payload):
    """Terminal: the task failed for good."""

    __slots__ = ()
    attempts: int
    reason: str


class AppDeployed(Payload):
    """An app was deployed (topics created, agents started)."""

    __slots__ = ()
    modules: list[str]
    spec_yaml: str = ""
    source: str = ""


class AppFinished(Payload):
    """Every task of an app run reached a terminal state."""

    __slots__ = ()
    succeeded: Long
    failed: Long


class AgentLifecycle(Payload):
    """Agent started, heartbeat or stopped."""

    __slots__ = ()
    agent: str
    state: str
    slots: int
    executor: str
    pid: int = 0


class ModuleState(Payload):
    """A module was suspended (error budget spent, or by hand) or resumed."""

    __slots__ = ()
    state: str
    reason: str = ""
    agent: str = ""


class StateChanged(Payload):
    """A shared-state item (semaphore, variable, global, app result) took a new value (see `state/`)."""

    __slots__ = ()
    kind: str
    name: str
    value: str
    old_value: str | None = None
    op: str
    request_id: str = ""
    version: Long


def payload_class(event_type: str) -> type[Payload]:
    """The payload class of an event type; KeyError for an unknown one."""
    return Payload.BY_NAME[event_type]
