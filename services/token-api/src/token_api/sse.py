"""Server-Sent Events for one dispatch: every transition as it is recorded, and, while it
waits for a worker slot, every change of its place in the queue.

Each event's ``id:`` is its entry id in the dispatch's event stream, so a reconnecting
EventSource resumes after ``Last-Event-ID``. Between events a comment line keeps proxies from
closing an idle connection; the stream ends once a terminal state has been sent.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import msgspec
from litestar.response import ServerSentEventMessage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentline.lifecycle import is_terminal
from agentline.schema import DispatchEvent
from agentline.store import DispatchStore
from token_api.problems import Problem

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
RETRY_MS = 2000  # how soon an EventSource reconnects after a drop


def checked_last_event_id(value: str | None) -> str:
    if not value:
        return "0-0"
    if not _STREAM_ID.match(value):
        raise Problem(
            400,
            "bad-last-event-id",
            "Last-Event-ID must be an event id sent by this stream (like 1732540800000-0).",
        )
    return value


def _message(event: DispatchEvent) -> ServerSentEventMessage:
    # "transition", or "queue" (a waiting dispatch's new place: detail position and
    # estimated_wait_ms; the state stays waiting)
    data = msgspec.json.encode(msgspec.structs.replace(event, event_id="")).decode()
    return ServerSentEventMessage(data=data, event=event.kind, id=event.event_id)


async def dispatch_events(
    store: DispatchStore, dispatch_id: str, after: str, heartbeat_seconds: float
) -> AsyncIterator[ServerSentEventMessage]:
    """Events after ``after``, then live ones, until a terminal state (or Redis drops)."""
    yield ServerSentEventMessage(data=None, comment="stream open", retry=RETRY_MS)
    block_ms = max(1, int(heartbeat_seconds * 1000))
    try:
        backlog = await store.events(dispatch_id, after=after)
        while True:
            for event in backlog:
                yield _message(event)
                after = event.event_id
                if is_terminal(event.state):
                    return
            backlog = await store.wait_events(dispatch_id, after, block_ms)
            if not backlog:
                yield ServerSentEventMessage(
                    data=None, comment="heartbeat"
                )  # no data: not an event
    except (RedisConnectionError, RedisTimeoutError):
        # The client reconnects with Last-Event-ID and resumes where it stopped.
        yield ServerSentEventMessage(
            event="error", data='{"detail":"dispatch store unreachable; reconnect"}'
        )
