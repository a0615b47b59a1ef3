"""The job's metadata as the dispatcher writes it into the LiveKit dispatch.

JSON: ``{"dispatch_id": ..., "metadata": <caller metadata>, "trace": {"traceparent": ...}}``
(``traceparent`` at the top level is accepted too). Jobs dispatched by something else
(a foreign dispatcher, a token's room configuration) carry anything or nothing: they still
run, with an empty dispatch id.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


class DispatchInfo(msgspec.Struct, frozen=True):
    dispatch_id: str = ""
    caller_metadata: str = ""
    trace: dict[str, str] = {}

    @property
    def traceparent(self) -> str:
        return self.trace.get("traceparent", "")


def parse_dispatch_metadata(raw: str) -> DispatchInfo:
    if not raw:
        return DispatchInfo()
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError:
        return DispatchInfo(caller_metadata=raw)
    if not isinstance(data, dict):
        return DispatchInfo(caller_metadata=raw)
    caller = data.get("metadata", "")
    if not isinstance(caller, str):
        caller = json.dumps(caller)
    trace: dict[str, str] = {}
    if isinstance(data.get("trace"), dict):
        trace = {str(k): str(v) for k, v in data["trace"].items()}
    if isinstance(data.get("traceparent"), str):
        trace.setdefault("traceparent", data["traceparent"])
    dispatch_id = data.get("dispatch_id", "")
    return DispatchInfo(
        dispatch_id=dispatch_id if isinstance(dispatch_id, str) else str(dispatch_id),
        caller_metadata=caller,
        trace=trace,
    )
