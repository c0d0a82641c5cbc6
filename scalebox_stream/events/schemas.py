"""Loads the Avro schemas kept in the repository's `schemas/` directory."""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

ENVELOPE_NAME = "sbx.events.Event"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"


def schema_dir() -> Path:
    """The directory holding `*.avsc` files (`SCALEBOX_SCHEMAS`, else the repository's `schemas/`, which the package
    reaches through its `events/avsc` link and an installed wheel holds as a copy)."""
    override = os.environ.get("SCALEBOX_SCHEMAS")
    if override:
        return Path(override)
    return Path(__file__).resolve().with_name("avsc")


@lru_cache(maxsize=4)
def envelope_schema(directory: Path | None = None) -> dict[str, Any]:
    """The parsed envelope schema, with every payload record resolved from its own file."""
    path = (directory or schema_dir()) / f"{ENVELOPE_NAME}.avsc"
    return load_schema(str(path))


def known_writer_schemas(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every envelope version on disk: the current files, read afresh, and `history/*.avsc` (expanded)."""
    base = directory or schema_dir()
    schemas: list[dict[str, Any]] = []
    for path in [base / f"{ENVELOPE_NAME}.avsc", *sorted((base / "history").glob("*.avsc"))]:
        with contextlib.suppress(Exception):  # a file being edited: keep what we know
            schemas.append(load_schema(str(path), _write_hint=False))
    return schemas


def single_object_header(schema: dict[str, Any]) -> bytes:
    """The 10-byte Avro single-object header: magic, then the CRC-64-AVRO fingerprint (little-endian)."""
    canonical = to_parsing_canonical_form(parse_schema(schema))
    return SINGLE_OBJECT_MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
