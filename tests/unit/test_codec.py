"""Round trips of the event codec, and schema evolution (older writer, newer reader)."""

import copy
import json

import pytest

from scalebox_stream.events import DecodeError, Event, EventCodec, child_task_id, new_task_id
from scalebox_stream.events.schemas import envelope_schema


def _created(**overrides):
    payload = {"body": "$(touch /tmp/x); y", "headers": {"k": "v"}, "parent_task_id": None,
               "not_before": None, "topic": "sbx.tasks.a.m", "task_created_at": 0}
    payload.update(overrides)
    return Event("TaskCreated", "app", payload, module="m", task_id=new_task_id(), attempt=1, host="h1")


def test_round_trip_every_payload_type():
    codec = EventCodec()
    finished = {
        "agent": "a1", "slot": 0, "executor": "process", "image": None, "container_id": None,
        "outcome": "succeeded", "exit_code": 0, "signal": None, "timed_out": False, "error": None,
        "stdout": "out\u00e9", "stderr": "", "custom_out": "25", "message_text": None,
        "stdout_bytes": 5, "stderr_bytes": 0, "status_code": None, "input_bytes": 10,
        "output_bytes": None, "read_bytes": None, "write_bytes": None, "cpu_user_s": 0.5,
        "cpu_system_s": None, "peak_memory_bytes": 1024, "started_at": 1, "finished_at": 2,
        "user_timestamps": [{"at": 5, "label": "begin"}, {"at": 6, "label": None}],
        "emitted_task_ids": ["x"], "emitted_modules": ["calc"],
    }
    events = [
        _created(),
        Event("TaskFinished", "app", finished, module="m", task_id="t", attempt=1),
        Event("TaskSucceeded", "app", {"attempts": 1}, module="m", task_id="t"),
        Event("TaskFailed", "app", {"attempts": 3, "reason": "exit 2"}, module="m", task_id="t"),
        Event("AgentLifecycle", "app", {"agent": "a", "state": "started", "slots": 2,
                                        "executor": "docker", "pid": 7}),
    ]
    for event in events:
        data = codec.encode(event)
        assert data[:2] == b"\xc3\x01"
        assert codec.decode(data) == event


def test_record_from_older_schema_is_read_with_defaults():
    """A TaskCreated written before `topic` existed decodes with the field's default."""
    old = copy.deepcopy(envelope_schema())
    created = next(s for s in old["fields"][-1]["type"] if s["name"] == "sbx.events.TaskCreated")
    created["fields"] = [f for f in created["fields"] if f["name"] not in ("topic", "task_created_at")]
    old_envelope_fields = [f for f in old["fields"] if f["name"] != "cluster"]
    old["fields"] = old_envelope_fields
    codec = EventCodec()
    codec.register_writer(old)
    record = _created().to_record()
    record.pop("cluster")
    payload = dict(record["payload"][1])
    payload.pop("topic")
    payload.pop("task_created_at")
    record["payload"] = ("sbx.events.TaskCreated", payload)
    decoded = codec.decode(codec.encode_with(old, record))
    assert decoded.payload["topic"] == ""
    assert decoded.cluster == ""
    assert decoded.payload["body"] == "$(touch /tmp/x); y"


def test_unknown_fingerprint_and_garbage_are_decode_errors():
    codec = EventCodec()
    with pytest.raises(DecodeError, match="magic"):
        codec.decode(b"not avro at all")
    with pytest.raises(DecodeError, match="fingerprint"):
        codec.decode(b"\xc3\x01" + b"\x00" * 8 + b"\x02")
    good = codec.encode(_created())
    with pytest.raises(DecodeError):
        codec.decode(good[:14])


def test_child_ids_are_deterministic_and_distinct():
    parent = new_task_id()
    assert child_task_id(parent, 0) == child_task_id(parent, 0)
    assert child_task_id(parent, 0) != child_task_id(parent, 1)


def test_schema_files_are_valid_json_with_docs(tmp_path):
    from scalebox_stream.events.schemas import schema_dir
    for path in schema_dir().glob("*.avsc"):
        schema = json.loads(path.read_text())
        assert f"{schema['namespace']}.{schema['name']}.avsc" == path.name


def test_current_envelope_is_kept_in_history():
    """Run `python -m scalebox_stream.events.snapshot` after changing a schema."""
    from scalebox_stream.events.schemas import schema_dir

    fingerprint = EventCodec().header[2:].hex()
    assert (schema_dir() / "history" / f"{fingerprint}.avsc").exists()


def test_every_historical_version_is_registered():
    from scalebox_stream.events.schemas import known_writer_schemas, single_object_header

    codec = EventCodec()
    for schema in known_writer_schemas():
        assert single_object_header(schema)[2:] in codec._writers


def test_records_of_the_current_schema_decode_without_schema_resolution():
    """Reloading schemas from disk must not replace the current writer (resolution is 3x slower)."""
    codec = EventCodec()
    codec._reload()
    assert codec._writers[codec.header[2:]] is codec._schema


def test_the_fast_reader_reads_what_the_public_reader_reads():
    """The codec reads its own schema with fastavro's record reader (a private API, checked at start);
    every kind of event of a realistic stream must come back equal to what fastavro's public reader gives."""
    import io

    from fastavro import schemaless_reader
    from support.workload import generate

    codec = EventCodec()
    assert codec._direct, "fastavro's record reader is not in use: decoding is ~15% slower"
    events = list(generate(3000, app="codec"))
    assert {e.event_type for e in events} >= {"TaskCreated", "TaskFinished", "TaskFailed", "TaskRetryScheduled"}
    for event in events:
        data = codec.encode(event)
        public = Event.from_record(schemaless_reader(io.BytesIO(data[10:]), codec._schema, return_record_name=True))
        decoded = codec.decode(data)
        assert decoded == public
        assert decoded.event_id == event.event_id and decoded.payload.items() >= event.payload.items()
