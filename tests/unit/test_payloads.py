"""The typed payloads: equal to `schemas/*.avsc`, the same bytes on the wire as dict payloads, read-only."""

import io
import json
import pickle
import types
import typing
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from scalebox_stream.events import (
    Event,
    EventCodec,
    Payload,
    TaskCreated,
    TaskFinished,
    TaskStarted,
    UserTimestamp,
)
from scalebox_stream.events.payloads import FieldSpec, Long, Record, payload_class

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ENVELOPE = "sbx.events.Event"


# ----- the classes equal the schema files ----------------------------------------------------------------------


def _avro_type(annotation: typing.Any) -> typing.Any:
    """The Avro type a payload field's annotation stands for."""
    if annotation is Long:
        return "long"
    simple = {str: "string", int: "int", float: "double", bool: "boolean"}
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return annotation.FULL_NAME
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and args[1] is type(None):
        return ["null", _avro_type(args[0])]
    if origin is list:
        return {"type": "array", "items": _avro_type(args[0])}
    if origin is dict and args[0] is str:
        return {"type": "map", "values": _avro_type(args[1])}
    raise AssertionError(f"no Avro type for {annotation!r}")


def _class_fields(cls: type[Record]) -> list[dict]:
    """A class's fields as Avro field declarations (name, type and default, in order)."""
    out = []
    for f in cls.FIELDS:
        field = {"name": f.name, "type": _avro_type(f.annotation)}
        if f.default is not FieldSpec.MISSING:
            field["default"] = f.default
        out.append(field)
    return out


def _schema_fields(schema: dict) -> list[dict]:
    """A schema file's fields without their docs."""
    return [{k: v for k, v in f.items() if k != "doc"} for f in schema["fields"]]


def _schema_files() -> dict[str, dict]:
    return {path.stem.rsplit(".", 1)[-1]: json.loads(path.read_text()) for path in SCHEMAS.glob("sbx.events.*.avsc")}


RECORDS = {cls.NAME: cls for cls in (UserTimestamp, *Payload.BY_NAME.values())}


def test_every_record_file_has_a_class_and_every_class_a_file():
    files = _schema_files()
    files.pop("Event")  # the envelope: `Event`'s own fields
    assert sorted(files) == sorted(RECORDS)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_class_declares_the_fields_of_its_schema_file(name):
    schema = _schema_files()[name]
    assert schema["namespace"] == "sbx.events" and schema["type"] == "record"
    assert _class_fields(RECORDS[name]) == _schema_fields(schema)


def test_the_envelope_union_lists_the_payload_classes_in_order():
    union = next(f["type"] for f in _schema_files()["Event"]["fields"] if f["name"] == "payload")
    assert union == [cls.FULL_NAME for cls in Payload.BY_NAME.values()]


def test_a_field_on_one_side_only_is_caught():
    """The comparison above fails when a class or a schema file gains a field the other lacks."""

    class TaskSucceeded(Record):  # a Record, so the registry of payloads stays as it is
        __slots__ = ()
        attempts: int
        note: str = ""

    schema = _schema_files()["TaskSucceeded"]
    assert _class_fields(TaskSucceeded) != _schema_fields(schema)
    schema["fields"].append({"name": "note", "type": "string", "default": ""})
    assert _class_fields(TaskSucceeded) == _schema_fields(schema)
    assert _class_fields(payload_class("TaskSucceeded")) != _schema_fields(schema)


# ----- the same bytes as the dict payloads -------------------------------------------------------------------

SAMPLES: dict[str, dict] = {
    "TaskCreated": {"body": "$(touch /tmp/x); y", "headers": {"k": "v"}, "parent_task_id": "p",
                    "not_before": 1_700_000_000_000_000, "topic": "sbx.tasks.a.m", "task_created_at": 3},
    "TaskAccepted": {"agent": "h-1-abc", "slot": 2, "topic": "sbx.tasks.a.m", "partition": 1, "offset": 2**40},
    "TaskStarted": {"agent": "h-1-abc", "slot": 2, "executor": "docker", "image": "img:1", "container_id": "c0ffee",
                    "started_at": 1_700_000_000_000_001, "admission_refusals": 4, "accepted_at": 7,
                    "topic": "t", "partition": 0, "offset": 9},
    "TaskFinished": {
        "agent": "a1", "slot": 0, "executor": "process", "image": None, "container_id": None,
        "outcome": "failed", "exit_code": -3, "signal": 9, "timed_out": True, "error": "boom",
        "stdout": "out\u00e9", "stderr": "err", "custom_out": "25", "message_text": "m",
        "stdout_bytes": 5, "stderr_bytes": 3, "status_code": 2, "input_bytes": 10,
        "output_bytes": None, "read_bytes": 2**33, "write_bytes": 0, "cpu_user_s": 0.5,
        "cpu_system_s": None, "peak_memory_bytes": 1024, "started_at": 1, "finished_at": 2,
        "user_timestamps": [{"at": 5, "label": "begin"}, {"at": 6, "label": None}],
        "emitted_task_ids": ["x", "y"], "emitted_modules": ["calc", "gather"],
    },
    "TaskRetryScheduled": {"rule": "exit_codes 1", "delay_s": 2.5, "next_attempt": 2},
    "TaskSucceeded": {"attempts": 1},
    "TaskFailed": {"attempts": 3, "reason": "exit 2"},
    "AppDeployed": {"modules": ["a", "b"], "spec_yaml": "name: x\n", "source": "/x/app.yaml"},
    "AppFinished": {"succeeded": 2**35, "failed": 0},
    "AgentLifecycle": {"agent": "a", "state": "started", "slots": 2, "executor": "docker", "pid": 7},
    "ModuleState": {"state": "suspended", "reason": "budget", "agent": "a"},
    "StateChanged": {"kind": "semaphore", "name": "sum", "value": "168", "old_value": "100", "op": "increment-n",
                     "request_id": "r1", "version": 7},
}
ENVELOPE_FIELDS = {"event_id": "5f0e9f0c-52a3-4c1b-9b1e-0c1d2e3f4a5b", "occurred_at": 1_700_000_000_123_456,
                   "app": "app", "module": "m", "task_id": "t", "attempt": 2, "cluster": "c", "host": "h",
                   "producer": "p", "schema_version": 1}


def _fastavro_bytes(event_type: str, payload: dict) -> bytes:
    """The single-object encoding of a dict-payload event, computed with fastavro from the schema files."""
    schema = parse_schema(load_schema(str(SCHEMAS / f"{ENVELOPE}.avsc")))
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    record = {**ENVELOPE_FIELDS, "event_type": event_type, "payload": (f"sbx.events.{event_type}", payload)}
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record)
    return header + buf.getvalue()


def test_every_payload_type_has_a_sample():
    assert sorted(SAMPLES) == sorted(Payload.BY_NAME)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_a_typed_event_encodes_to_the_bytes_of_its_dict_and_decodes_equal(event_type):
    codec = EventCodec()
    fields = SAMPLES[event_type]
    payload = payload_class(event_type)(**fields)
    event = Event(event_type, payload=payload, **ENVELOPE_FIELDS)
    data = codec.encode(event)
    assert data == _fastavro_bytes(event_type, fields)
    decoded = codec.decode(data)
    assert decoded == event and type(decoded.payload) is type(payload)
    for name, value in fields.items():
        if name != "user_timestamps":
            assert getattr(decoded.payload, name) == value and decoded.payload[name] == value


def test_nested_records_are_typed_on_access_and_plain_in_the_mapping_view():
    stamps = [UserTimestamp(at=5, label="begin"), UserTimestamp(at=6)]
    payload = TaskFinished(**{**SAMPLES["TaskFinished"], "user_timestamps": stamps})
    assert payload == TaskFinished(**SAMPLES["TaskFinished"])
    assert payload.user_timestamps == stamps and payload.user_timestamps[0].label == "begin"
    assert payload["user_timestamps"] == [{"at": 5, "label": "begin"}, {"at": 6, "label": None}]


def test_left_out_fields_take_the_schema_defaults():
    created = TaskCreated(body="b")
    assert (created.headers, created.parent_task_id, created.not_before, created.topic,
            created.task_created_at) == ({}, None, None, "", 0)
    assert created.headers is not TaskCreated(body="c").headers  # each payload has its own map
    assert TaskFinished(agent="a", slot=0, executor="process", outcome="lost", exit_code=1, started_at=1,
                        finished_at=1).emitted_task_ids == []


def test_a_payload_is_read_only_and_changes_by_replace():
    started = TaskStarted(**SAMPLES["TaskStarted"])
    with pytest.raises(AttributeError):
        started.slot = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        started.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        started["slot"] = 3  # type: ignore[index]
    moved = started.replace(slot=3)
    assert (moved.slot, started.slot) == (3, 2) and moved.image == started.image


def test_the_mapping_view_reads_like_the_dict_of_before():
    started = TaskStarted(**SAMPLES["TaskStarted"])
    assert dict(**started) == SAMPLES["TaskStarted"] == dict(started.items())
    assert list(started.keys()) == [f.name for f in TaskStarted.FIELDS]
    assert started.get("offset") == 9 and started.get("missing", "d") == "d" and "slot" in started
    assert started == SAMPLES["TaskStarted"] and started != {**SAMPLES["TaskStarted"], "slot": 3}
    assert payload_class("TaskSucceeded")(attempts=1) != payload_class("TaskFailed")(attempts=1, reason="")
    with pytest.raises(KeyError):
        started["missing"]


def test_a_record_class_must_declare_its_slots():
    with pytest.raises(TypeError, match="__slots__"):
        class Loose(Record):
            at: int


def test_a_payload_survives_pickling():
    finished = TaskFinished(**SAMPLES["TaskFinished"])
    assert pickle.loads(pickle.dumps(finished)) == finished


def test_a_payload_needs_its_required_fields_and_no_others():
    with pytest.raises(TypeError):
        TaskStarted(agent="a", slot=0, executor="process")  # type: ignore[call-arg]  # no started_at
    with pytest.raises(TypeError):
        TaskCreated(body="b", colour="red")  # type: ignore[call-arg]


def test_an_event_turns_a_dict_payload_into_its_class_and_refuses_a_mismatch():
    event = Event("TaskSucceeded", "app", {"attempts": 2})
    assert event.payload == payload_class("TaskSucceeded")(attempts=2)
    with pytest.raises(ValueError, match="TaskFailed payload in a TaskSucceeded event"):
        Event("TaskSucceeded", "app", payload_class("TaskFailed")(attempts=1, reason="x"))
    with pytest.raises(TypeError):
        Event("TaskSucceeded", "app", {"attempts": 2, "colour": "red"})
