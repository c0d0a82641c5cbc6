"""Any Avro library can read the events from `schemas/` alone: every event of a real run, decoded with
Apache's `avro` package (not fastavro), single-object header checked, equals what fastavro decoded."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import avro.io
import avro.name
import avro.schema
from test_projector_replay import app_events, run_app

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ENVELOPE = "sbx.events.Event"


def _references(node: object, known: set[str]) -> set[str]:
    """Full names of other schema files a JSON schema refers to."""
    if isinstance(node, str):
        return {node} & known
    if isinstance(node, list):
        return set().union(*(_references(n, known) for n in node)) if node else set()
    if isinstance(node, dict):
        return set().union(*(_references(v, known) for k, v in node.items() if k in ("type", "items", "values",
                                                                                    "fields"))) if node else set()
    return set()


def load_schemas() -> tuple[avro.schema.Schema, avro.name.Names]:
    """Parse every `.avsc` with one shared `Names`, dependencies first; returns the envelope and the names."""
    files = {p.name.removesuffix(".avsc"): json.loads(p.read_text()) for p in SCHEMAS.glob("*.avsc")}
    assert all(re.fullmatch(r"sbx\.events\.\w+", name) for name in files), sorted(files)
    names = avro.name.Names()
    parsed: dict[str, avro.schema.Schema] = {}
    while len(parsed) < len(files):
        ready = [n for n, js in files.items() if n not in parsed and _references(js, set(files)) - {n} <= set(parsed)]
        assert ready, f"circular or missing schema references among {sorted(set(files) - set(parsed))}"
        for name in sorted(ready):
            parsed[name] = avro.schema.make_avsc_object(files[name], names)
    return parsed[ENVELOPE], names


def test_events_decode_with_apache_avro_from_the_schema_files(kafka_bootstrap, pg_dsn, tmp_path):
    envelope, names = load_schemas()
    fingerprint = envelope.fingerprint("CRC-64-AVRO")
    assert len(fingerprint) == 8
    reader = avro.io.DatumReader(envelope)

    app, since_ms = run_app(kafka_bootstrap, pg_dsn, tmp_path)
    records = app_events(kafka_bootstrap, app, since_ms)
    assert len(records) > 20
    seen_types = set()
    for _, value, fast in records:
        assert value[:2] == b"\xc3\x01", "single-object magic"
        assert value[2:10] == fingerprint, "CRC-64-AVRO fingerprint of sbx.events.Event"
        record = reader.read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))
        payload = record.pop("payload")
        assert record == {
            "event_id": fast.event_id, "event_type": fast.event_type, "occurred_at": fast.occurred_at,
            "app": fast.app, "module": fast.module, "task_id": fast.task_id, "attempt": fast.attempt,
            "cluster": fast.cluster, "host": fast.host, "producer": fast.producer,
            "schema_version": fast.schema_version}
        branch = names.get_name(f"sbx.events.{fast.event_type}", None)
        assert branch is not None and set(payload) == {f.name for f in branch.fields}
        assert payload == fast.payload
        seen_types.add(fast.event_type)
    assert {"AppDeployed", "AgentLifecycle", "TaskCreated", "TaskAccepted", "TaskStarted", "TaskFinished",
            "TaskRetryScheduled", "TaskFailed"} <= seen_types
