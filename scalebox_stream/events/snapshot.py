"""Keep every released envelope version in `schemas/history/` (run after changing a schema).

`python -m scalebox_stream.events.snapshot` writes the current envelope, with every payload record
inlined, as `history/<fingerprint>.avsc`, so readers can always resolve records written by any
version, from the repository's files alone.
"""

from __future__ import annotations

import json
import sys

from fastavro.schema import load_schema

from scalebox_stream.events.schemas import ENVELOPE_NAME, schema_dir, single_object_header


def snapshot() -> str:
    """Write the current envelope into history (idempotent); returns the file name."""
    base = schema_dir()
    schema = load_schema(str(base / f"{ENVELOPE_NAME}.avsc"), _write_hint=False)
    name = f"{single_object_header(schema)[2:].hex()}.avsc"
    target = base / "history" / name
    target.parent.mkdir(exist_ok=True)
    if not target.exists():
        target.write_text(json.dumps(schema, indent=1) + "\n")
    return name


if __name__ == "__main__":
    sys.stdout.write(snapshot() + "\n")
