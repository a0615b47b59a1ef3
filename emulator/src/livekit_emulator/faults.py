"""Fault injection: per-Twirp-method latency and errors, refusing all traffic for a while."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import TWIRP_STATUS

SERVICES = ("RoomService", "AgentDispatchService")


def method_key(method: str) -> str:
    """``CreateDispatch``, ``AgentDispatchService/CreateDispatch`` and
    ``livekit.AgentDispatchService/CreateDispatch`` all name the same method; ``*`` is every
    method."""
    method = method.strip().strip("/")
    if method.startswith("twirp/"):
        method = method[len("twirp/") :]
    if method.startswith("livekit."):
        method = method[len("livekit.") :]
    return method.rsplit("/", 1)[-1]


@dataclass
class Fault:
    method: str
    latency_s: float | None = None
    http_status: int | None = None
    twirp_code: str | None = None
    twirp_msg: str | None = None
    reset_connection: bool = False
    # How many more calls it applies to; None: until cleared.
    count: int | None = None

    def __post_init__(self) -> None:
        if self.twirp_code is not None and self.twirp_code not in TWIRP_STATUS:
            raise ValueError(f"unknown twirp code {self.twirp_code!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    def __init__(self) -> None:
        self.by_method: dict[str, Fault] = {}
        self.refuse_until = 0.0
        self.refused = 0
        self.injected = 0

    def set(self, fault: Fault) -> Fault:
        fault.method = method_key(fault.method)
        self.by_method[fault.method] = fault
        return fault

    def clear(self) -> None:
        self.by_method.clear()
        self.refuse_until = 0.0

    def take(self, method: str) -> Fault | None:
        """The fault that applies to this call of ``method`` (counted), if any."""
        if not self.by_method:
            return None
        key = method if method in self.by_method else "*"
        fault = self.by_method.get(key)
        if fault is None:
            return None
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                del self.by_method[key]
        self.injected += 1
        return fault

    def refuse_for(self, seconds: float) -> None:
        self.refuse_until = time.monotonic() + seconds

    def refusing(self) -> bool:
        return time.monotonic() < self.refuse_until

    def snapshot(self) -> dict[str, Any]:
        return {
            "faults": [f.to_dict() for f in self.by_method.values()],
            "refusing_for_s": max(0.0, self.refuse_until - time.monotonic()),
            "refused": self.refused,
            "injected": self.injected,
        }
