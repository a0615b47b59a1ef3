"""What the end-to-end records say about agentline's own share of a dispatch's time, and what
the emulator says about its webhooks.

A dispatch's queue wait (requested → dispatching) has two parts once capacity-aware admission
makes it wait: time with no free worker slot (the worker fleet's capacity, not agentline's
overhead) and everything else (the stream, the dispatcher taking the request, the admission
hand-off once a slot is free), which is agentline's. The records have the times needed to
separate them: ``waiting`` (admission found no slot), ``dispatching`` (it got one) and
``ended`` (the call is over; the worker reports it and the slot is given back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bench.common import percentile


def stamps(record: dict[str, Any]) -> dict[str, float]:
    """Stage → seconds since the epoch, from the record's RFC 3339 timestamps."""
    return {k: datetime.fromisoformat(v).timestamp() for k, v in record["timestamps"].items()}


def _p(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def _handoffs(rows: list[dict[str, float]]) -> dict[int, float | None]:
    """For each dispatch that waited (by index): the time from the slot release that let it
    go to its ``dispatching``. Releases (``ended``) while dispatches wait are matched first in,
    first out to the starts of waiting dispatches, as admission hands slots out in order: the
    conservative (longest) pairing. None when no release preceded its start (its slot came
    from elsewhere); then none of its wait is counted as capacity."""
    events: list[tuple[float, int, int]] = []
    for index, row in enumerate(rows):
        if "ended" in row:
            events.append((row["ended"], 0, index))
        if "waiting" in row and "dispatching" in row:
            events.append((row["waiting"], 1, index))
            events.append((row["dispatching"], 2, index))
    events.sort()
    waiting, releases = 0, []
    out: dict[int, float | None] = {}
    for at, kind, index in events:
        if kind == 0:
            if waiting:
                releases.append(at)
        elif kind == 1:
            waiting += 1
        else:
            waiting -= 1
            out[index] = at - releases.pop(0) if releases else None
    return out


def queue_split(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Queue wait split into agentline's own part and the wait for a worker slot, plus how
    long each call held its slot (admission → the call's end)."""
    rows = [stamps(r) for r in records]
    rows = [r for r in rows if "requested" in r and "dispatching" in r]
    handoffs = _handoffs(rows)
    own, capacity, handoff, holds, after_speaking = [], [], [], [], []
    for index, row in enumerate(rows):
        total = row["dispatching"] - row["requested"]
        slot_wait = 0.0
        if index in handoffs and handoffs[index] is not None:
            hand = handoffs[index] or 0.0
            slot_wait = max(0.0, row["dispatching"] - row["waiting"] - hand)
            handoff.append(hand)
            capacity.append(slot_wait)
        own.append(total - slot_wait)
        if "ended" in row:
            holds.append(row["ended"] - row["dispatching"])
            if "speaking" in row:
                after_speaking.append(row["ended"] - row["speaking"])
    return {
        "own_queue_wait": _p(own),
        "capacity_wait": _p(capacity),
        "waited_for_a_slot": sum(1 for r in rows if "waiting" in r),
        "admission_handoff": _p(handoff),
        "slot_hold": _p(holds),
        "speaking_to_ended": _p(after_speaking),
        "method": "own queue wait = requested → dispatching minus the time no slot was free "
        "(waiting → dispatching less the hand-off from the release of the slot it got, "
        "releases matched first in, first out); slot hold = dispatching → ended",
    }


def webhook_delivery(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    """The emulator's webhook deliveries by event: time queued behind their sender and the
    POST itself (the receiver's answer time)."""
    by_event: dict[str, tuple[list[float], list[float]]] = {}
    for delivery in deliveries:
        queued, took = by_event.setdefault(delivery["event"], ([], []))
        queued.append(delivery.get("queued_ms", 0.0) / 1000)
        took.append(delivery.get("took_ms", 0.0) / 1000)
    return {
        event: {"queued": _p(queued), "post": _p(took)}
        for event, (queued, took) in sorted(by_event.items())
    }


# What reports each stage first: the agent worker's own event (worker-events stream) or
# LiveKit's webhook about the agent participant (the emulator's deliveries).
STAGE_EVIDENCE: dict[str, tuple[str, str]] = {
    "assigned": ("accepted", ""),
    "joined": ("joined", "participant_joined"),
    "speaking": ("audio_published", "track_published"),
}


def signal_lags(
    records: list[dict[str, Any]],
    worker_events: list[dict[str, str]],
    webhook_posts: list[dict[str, Any]],
) -> dict[str, Any]:
    """agentline's own share of the stages a signal moves: the record's time of the stage
    less the earliest report of it, the worker's event (its ``at_ms``: our worker's reporting
    path counts as ours) or LiveKit's webhook about the agent participant (when its body was
    written to the dispatcher's socket, ``posted_at``, else when its POST started, ``sent_at``:
    the time it waited in LiveKit's sender and LiveKit took to send it is LiveKit's). That is the
    signal's way through Redis or HTTP and the dispatcher until the transition is stamped. A
    stage stamped before any report seen here (a ListDispatch poll, say) counts as 0 and is
    counted apart (``before_report``)."""
    by_worker: dict[tuple[str, str], float] = {}
    for event in worker_events:
        key = (event.get("dispatch_id", ""), event.get("kind", ""))
        at = int(event.get("at_ms", "0") or 0) / 1000
        if key[0] and at and (key not in by_worker or at < by_worker[key]):
            by_worker[key] = at
    by_livekit: dict[tuple[str, str], float] = {}
    for post in webhook_posts:
        reached = post.get("posted_at") or post.get("sent_at")
        if post.get("participant_kind") != "AGENT" or not reached:
            continue
        key = (str(post.get("room", "")), str(post.get("event", "")))
        t = float(reached)
        if key not in by_livekit or t < by_livekit[key]:
            by_livekit[key] = t
    out: dict[str, Any] = {}
    for stage, (worker_kind, livekit_event) in STAGE_EVIDENCE.items():
        lags: list[float] = []
        before = 0
        for record in records:
            stamped = stamps(record).get(stage)
            reports = [
                t
                for t in (
                    by_worker.get((record["id"], worker_kind)),
                    by_livekit.get((record.get("room", ""), livekit_event)),
                )
                if t is not None
            ]
            if stamped is None or not reports:
                continue
            lag = stamped - min(reports)
            if lag < 0:
                before += 1
            lags.append(max(0.0, lag))
        out[stage] = {**_p(lags), "before_report": before}
    return out
