"""Comparison with the golden traces of livekit-server 1.13.5 (``../shared/livekit-golden``,
vendored in ``emulator/tests/golden``): ids, times, secrets and other per-run values are
scrubbed, everything else must match."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Values that differ from run to run (ids, times, secrets): compared by presence only.
VOLATILE = frozenset(
    {
        "sid",
        "id",
        "creation_time",
        "creation_time_ms",
        "creationTime",
        "creationTimeMs",
        "turn_password",
        "turnPassword",
        "created_at",
        "createdAt",
        "started_at",
        "updated_at",
        "joined_at",
        "joined_at_ms",
        "joinedAt",
        "joinedAtMs",
        "worker_id",
        "dispatch_id",
        "participant_identity",
        "identity",
        "cid",
        "unix_micro",
        "unixMicro",
        "node_id",
        "job_id",
        "exp",
        "nbf",
        "iat",
        "sub",
        "sha256",
        "token",
    }
)


def load(directory: Path, relative: str) -> Any:
    return json.loads((directory / relative).read_text())


def scrub(value: Any, drop: frozenset[str] = frozenset()) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<volatile>" if k in VOLATILE else scrub(v, drop))
            for k, v in value.items()
            if k not in drop
        }
    if isinstance(value, list):
        return [scrub(v, drop) for v in value]
    return value


def by_agent_name(body: dict[str, Any]) -> dict[str, Any]:
    """ListDispatch answers in map order: sort for comparison."""
    out = dict(body)
    out["agent_dispatches"] = sorted(body["agent_dispatches"], key=lambda d: d["agent_name"])
    return out


def same(golden: Any, ours: Any, drop: frozenset[str] = frozenset()) -> None:
    g, o = scrub(golden, drop), scrub(ours, drop)
    assert o == g, (
        f"\ngolden: {json.dumps(g, sort_keys=True)}\nours:   {json.dumps(o, sort_keys=True)}"
    )


def same_reply(golden: dict[str, Any], status: int, content_type: str, body: Any) -> None:
    response = golden["response"]
    assert status == response["status"]
    assert content_type == response["headers"]["content-type"]
    same(response["body"], body)
