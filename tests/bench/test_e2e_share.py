"""The end-to-end benchmark's split of the queue wait: capacity apart from agentline's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.e2e_share import queue_split, signal_lags, webhook_delivery


def _record(**at_ms: int) -> dict[str, Any]:
    def iso(ms: int) -> str:
        return datetime.fromtimestamp(1_800_000_000 + ms / 1000, UTC).isoformat()

    return {"timestamps": {stage: iso(ms) for stage, ms in at_ms.items()}}


def test_slot_wait_is_split_from_the_own_queue_wait() -> None:
    records = [
        # holds the only slot 0.1 → 2.0 s
        _record(requested=0, dispatching=100, speaking=900, ended=2000),
        # waits from 0.5 s; the slot comes back at 2.0 s, it starts 30 ms later
        _record(requested=500, waiting=510, dispatching=2030, speaking=2800, ended=3500),
    ]
    split = queue_split(records)
    assert split["waited_for_a_slot"] == 1
    assert split["capacity_wait"]["p99_ms"] == 1490.0  # 0.51 → 2.0 s: no slot free
    assert split["admission_handoff"]["p99_ms"] == 30.0  # release → its dispatching: ours
    # own: 100 ms for the first; 10 ms before waiting + 30 ms hand-off for the second
    assert split["own_queue_wait"]["p50_ms"] == 40.0
    assert split["own_queue_wait"]["max_ms"] == 100.0
    assert split["slot_hold"]["max_ms"] == 1900.0
    assert split["speaking_to_ended"]["p50_ms"] == 700.0


def test_a_wait_without_a_release_counts_as_own() -> None:
    """No slot came back before it started: nothing proves it waited for capacity."""
    split = queue_split([_record(requested=0, waiting=5, dispatching=800)])
    assert split["capacity_wait"]["count"] == 0
    assert split["own_queue_wait"]["p99_ms"] == 800.0


def test_releases_go_to_waiting_dispatches_in_order() -> None:
    records = [
        _record(requested=0, dispatching=0, ended=1000),
        _record(requested=0, dispatching=0, ended=1100),
        _record(requested=10, waiting=10, dispatching=1500),  # first in: the 1.0 s release
        _record(requested=20, waiting=20, dispatching=1600),  # then the 1.1 s one
    ]
    split = queue_split(records)
    assert split["admission_handoff"]["max_ms"] == 500.0
    assert split["capacity_wait"]["max_ms"] == 1080.0  # 20 → 1600 ms less its 500 ms hand-off


def test_webhook_delivery_by_event() -> None:
    deliveries = [
        {"event": "participant_joined", "queued_ms": 120.0, "took_ms": 12.0},
        {"event": "participant_joined", "queued_ms": 2.0, "took_ms": 8.0},
        {"event": "room_started", "queued_ms": 1.0, "took_ms": 3.0},
    ]
    figures = webhook_delivery(deliveries)
    assert figures["participant_joined"]["queued"]["max_ms"] == 120.0
    assert figures["room_started"]["post"]["p50_ms"] == 3.0


def test_signal_lag_counts_from_the_earliest_report_of_the_stage() -> None:
    base = 1_800_000_000.0
    record = {
        "id": "dsp_1",
        "room": "room-1",
        **_record(requested=0, assigned=230, joined=400, speaking=520),
    }
    worker_events = [
        {"dispatch_id": "dsp_1", "kind": "accepted", "at_ms": str(int(base * 1000) + 225)},
        {"dispatch_id": "dsp_1", "kind": "joined", "at_ms": str(int(base * 1000) + 395)},
        {"dispatch_id": "dsp_1", "kind": "audio_published", "at_ms": str(int(base * 1000) + 530)},
        {"dispatch_id": "dsp_2", "kind": "accepted", "at_ms": str(int(base * 1000))},
    ]
    webhook_posts = [
        # the agent's join reached us first by webhook: the lag counts from its POST
        {"event": "participant_joined", "room": "room-1", "participant_kind": "AGENT",
         "sent_at": base + 0.390},
        # the caller's events are not the agent's
        {"event": "track_published", "room": "room-1", "participant_kind": "STANDARD",
         "sent_at": base + 0.100},
        {"event": "track_published", "room": "room-1", "participant_kind": "AGENT",
         "sent_at": base + 0.510},
    ]  # fmt: skip
    lags = signal_lags([record], worker_events, webhook_posts)
    assert lags["assigned"]["max_ms"] == 5.0
    assert lags["joined"]["max_ms"] == 10.0
    assert lags["speaking"]["max_ms"] == 10.0  # the webhook at 510 ms, not the worker's 530
    assert all(lags[s]["before_report"] == 0 for s in lags)
    # When the body reached our socket is known: the time LiveKit took to send it is not ours.
    webhook_posts[0]["posted_at"] = base + 0.394  # still before the worker's report (395)
    lags = signal_lags([record], worker_events, webhook_posts)
    assert lags["joined"]["max_ms"] == 6.0


def test_a_stage_stamped_before_its_report_counts_as_zero() -> None:
    base_ms = 1_800_000_000_000
    record = {"id": "dsp_1", "room": "r", **_record(requested=0, assigned=100)}
    events = [{"dispatch_id": "dsp_1", "kind": "accepted", "at_ms": str(base_ms + 150)}]
    lags = signal_lags([record], events, [])
    assert lags["assigned"]["max_ms"] == 0.0 and lags["assigned"]["before_report"] == 1
    assert lags["joined"]["count"] == 0
