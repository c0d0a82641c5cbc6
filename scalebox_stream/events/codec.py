"""Avro single-object encoding of events with fastavro, and schema resolution for older writers."""

from __future__ import annotations

import io
import time
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema

from scalebox_stream.events.envelope import Event
from scalebox_stream.events.payloads import TaskStarted
from scalebox_stream.events.schemas import (
    SINGLE_OBJECT_MAGIC,
    envelope_schema,
    known_writer_schemas,
    single_object_header,
)

try:  # fastavro's record reader, without the schema walk schemaless_reader makes on every call
    from fastavro._read import _read_data as _fastavro_read_data
except ImportError:  # the pure-Python build: the public reader is used
    _fastavro_read_data = None
_READ_OPTIONS = {"return_record_name": True, "return_record_name_override": False, "handle_unicode_errors": "strict",
                 "return_named_type": False, "return_named_type_override": False}
RELOAD_INTERVAL_S = 5.0


class DecodeError(ValueError):
    """Raised for bytes that are not an event this codec knows how to read."""


class EventCodec:
    """Encodes events with the current schema; decodes any registered (older or current) writer schema."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self._schema = parse_schema(schema if schema is not None else envelope_schema())
        self._header = single_object_header(self._schema)
        self._writers: dict[bytes, dict[str, Any]] = {self._header[2:]: self._schema}
        self._named: dict[str, dict] = {"writer": {}, "reader": {}}
        parse_schema(self._schema, self._named["writer"])
        self._direct = self._direct_read_works()
        self._last_reload = 0.0
        self._reload()

    def _direct_read_works(self) -> bool:
        """Whether fastavro's internal reader (a private API) reads what its public reader reads, here."""
        if _fastavro_read_data is None:
            return False
        sample = Event("TaskStarted", "app", TaskStarted(agent="a", slot=1, executor="process", container_id="c",
                                                         started_at=1, admission_refusals=2))
        body = self.encode(sample)[10:]
        try:
            direct = _fastavro_read_data(io.BytesIO(body), self._schema, self._named, None, _READ_OPTIONS)
        except Exception:  # another fastavro version with another signature
            return False
        return direct == schemaless_reader(io.BytesIO(body), self._schema, return_record_name=True)

    @property
    def header(self) -> bytes:
        """The single-object header of the current schema."""
        return self._header

    def register_writer(self, schema: dict[str, Any]) -> bytes:
        """Make records written with `schema` (an older version, say) decodable; returns its fingerprint."""
        parsed = parse_schema(schema)
        fp = single_object_header(parsed)[2:]
        if fp != self._header[2:]:  # the current schema keeps its own object: decoding skips resolution
            self._writers[fp] = parsed
        return fp

    def _reload(self) -> None:
        """Learn writer schemas added to `schemas/` since start (a newer agent's, older versions kept)."""
        self._last_reload = time.monotonic()
        for schema in known_writer_schemas():
            self.register_writer(schema)

    def encode(self, event: Event) -> bytes:
        """Encode one event as Avro single-object bytes."""
        buf = io.BytesIO()
        buf.write(self._header)
        schemaless_writer(buf, self._schema, event.to_record())
        return buf.getvalue()

    def encode_with(self, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
        """Encode a raw record with another writer schema (tests and tools)."""
        parsed = parse_schema(schema)
        buf = io.BytesIO()
        buf.write(single_object_header(parsed))
        schemaless_writer(buf, parsed, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> Event:
        """Decode single-object bytes into an Event with a typed payload, resolving the writer schema by
        fingerprint."""
        if data is None or len(data) < 10 or data[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError("not Avro single-object encoded (bad magic or too short)")
        writer = self._writers.get(bytes(data[2:10]))
        if writer is None and time.monotonic() - self._last_reload > RELOAD_INTERVAL_S:
            self._reload()
            writer = self._writers.get(bytes(data[2:10]))
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {bytes(data[2:10]).hex()}")
        try:
            if writer is self._schema and self._direct:
                record = _fastavro_read_data(io.BytesIO(data[10:]), writer, self._named, None, _READ_OPTIONS)
            else:
                record = schemaless_reader(io.BytesIO(data[10:]), writer, self._schema if writer is not self._schema
                                           else None, return_record_name=True)
        except Exception as exc:  # fastavro raises a variety of errors on corrupt input
            raise DecodeError(f"corrupt Avro record: {exc}") from exc
        return Event.from_record(record)
