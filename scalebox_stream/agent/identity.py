"""Who and where an agent is: host name, IP, agent id."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field


def local_ip() -> str:
    """The address other hosts would use to reach this one (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


@dataclass(frozen=True)
class AgentIdentity:
    """The identity stamped on every event an agent produces."""

    app: str
    module: str
    host: str = field(default_factory=socket.gethostname)
    ip: str = field(default_factory=local_ip)
    cluster: str = field(default_factory=lambda: os.environ.get("SCALEBOX_CLUSTER", "local"))
    agent_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
