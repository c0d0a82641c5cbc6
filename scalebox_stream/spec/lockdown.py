"""A module's lock-down keys: `user`, `cap_add`, `resources`, `read_only_rootfs` and `secrets`.

| key | meaning |
| --- | --- |
| `user` | `uid` or `uid:gid` the container runs as (default: a non-root user, see `executors.lockdown`) |
| `cap_add` | Linux capabilities given back (every other one is dropped): `[NET_BIND_SERVICE]` |
| `resources` | `{memory: 2g, cpus: 1.5, pids: 512}`: per-container limits (pids defaults to 512) |
| `read_only_rootfs` | the container's root file system read-only, `/tmp` a tmpfs (the work dir stays writable) |
| `secrets` | `{NAME: {file: /run/secrets/x}}` or `{NAME: {env: VAR}}`: read by the agent, given to the attempt as
  the environment variable NAME; the app file names where a secret comes from, never its value |

Pure: parsing and bounds only; the agent reads the secrets (`agent.secrets`), the executors apply the rest.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .limits import MAX_CAPS, MAX_CPUS, MAX_MEMORY_BYTES, MAX_PIDS, MAX_SECRETS, MIN_MEMORY_BYTES, shown, within_limit

USER_RE = re.compile(r"(\d{1,10})(?::(\d{1,10}))?")
CAPABILITY_RE = re.compile(r"(CAP_)?[A-Z][A-Z_]{1,30}")
SECRET_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]{0,2})\s*")


def parse_memory(value: Any) -> int:
    """`2g`, `512m`, `1.5GiB`-style (`Gi`) or a plain number of bytes, as bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 2g or 512m, got a boolean")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str) and (m := _SIZE_RE.fullmatch(value)) and m.group(2).lower() in _UNITS:
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        raise ValueError(f"expected a size such as 2g or 512m, got {value!r}")
    size = int(number * _UNITS[unit])
    if not MIN_MEMORY_BYTES <= size <= MAX_MEMORY_BYTES:
        raise ValueError(f"memory must be between {MIN_MEMORY_BYTES >> 20} MiB (MIN_MEMORY_BYTES) and "
                         f"{MAX_MEMORY_BYTES >> 40} TiB (MAX_MEMORY_BYTES), got {value!r}")
    return size


class ResourcesSpec(BaseModel):
    """Per-container limits: memory (bytes), CPUs (fractional), processes (the pids limit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory: int | None = None
    cpus: float | None = Field(default=None, gt=0, le=MAX_CPUS, allow_inf_nan=False)
    pids: int | None = Field(default=None, ge=16, le=MAX_PIDS)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        return None if value is None else parse_memory(value)

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: Any) -> Any:
        return within_limit(value, MAX_CPUS, "MAX_CPUS")

    @field_validator("pids", mode="before")
    @classmethod
    def _pids(cls, value: Any) -> Any:
        return within_limit(value, MAX_PIDS, "MAX_PIDS")


class SecretSource(BaseModel):
    """Where the agent reads one secret: a file on its host, or a variable of its own environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file: (a path on the agent's host) or env: (a variable of the "
                             "agent's environment); the value itself never goes in the app file")
        if self.file is not None and not self.file.startswith("/"):
            raise ValueError(f"secret file {self.file!r} must be an absolute path")
        if self.env is not None and not SECRET_NAME_RE.fullmatch(self.env):
            raise ValueError(f"bad variable name {self.env!r}")
        return self


def check_user(value: Any) -> Any:
    """`1000`, `1000:1000` (numbers: the agent makes the work dir theirs); `root` is `0:0`."""
    if value is None:
        return None
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text == "root":
        return "0:0"
    if text is None or not (m := USER_RE.fullmatch(text)):
        raise ValueError(f"expected a numeric uid or uid:gid such as 1000:1000, got {value!r}")
    return f"{m.group(1)}:{m.group(2) or m.group(1)}"


def check_caps(value: Any) -> Any:
    """Capability names, upper case, without the `CAP_` prefix."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_CAPS:
        raise ValueError(f"{len(items)} capabilities, over the limit of {MAX_CAPS} (MAX_CAPS)")
    out = []
    for item in items:
        name = item.strip().upper() if isinstance(item, str) else ""
        if not CAPABILITY_RE.fullmatch(name) or name.removeprefix("CAP_") == "ALL":
            raise ValueError(f"expected a capability name such as NET_BIND_SERVICE, got {item!r}")
        out.append(name.removeprefix("CAP_"))
    return out


def check_secrets(value: Any) -> Any:
    """A map NAME -> {file: path} or {env: VAR}; a bare string is refused (it would be the value itself)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("expected a map NAME: {file: /path} or NAME: {env: VAR}")
    if len(value) > MAX_SECRETS:
        raise ValueError(f"{len(value)} secrets, over the limit of {MAX_SECRETS} (MAX_SECRETS)")
    for name, source in value.items():
        if not SECRET_NAME_RE.fullmatch(str(name)):
            raise ValueError(f"bad secret name {name!r}: it is the variable the task sees")
        if not isinstance(source, dict | SecretSource):
            raise ValueError(f"secret {name}: expected {{file: /path}} or {{env: VAR}}, not the value itself")
    return value


__all__ = ["ResourcesSpec", "SecretSource", "check_caps", "check_secrets", "check_user", "parse_memory", "shown"]
