"""Webhooks as LiveKit sends them.

Body: protojson ``WebhookEvent`` (lowerCamelCase, zero values left out); headers
``Content-Type: application/webhook+json`` and ``Authorization: <token>`` (no scheme), the
token signed with the API secret and carrying the body's base64 SHA-256 in its ``sha256``
claim. Events of one room are delivered in order; failed deliveries are retried a few times.
As livekit's ``URLNotifier``: an event that finds its sender's queue full is dropped, and the
next event sent carries the count in ``numDropped``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToDict

from . import ids
from .auth import webhook_token
from .config import EmulatorConfig
from .model import Participant, Room, Track
from .state import State

logger = logging.getLogger("livekit_emulator.webhooks")

CONTENT_TYPE = "application/webhook+json"
# A queued webhook: emitted at (loop time), event, room name, payload, what it is about.
_Queued = tuple[float, str, str, dict[str, Any], dict[str, Any]]
# Events whose room and participant are given by reference only (sid + name / identity).
TRACK_EVENTS = frozenset({"track_published", "track_unpublished"})


class WebhookNotifier:
    def __init__(self, config: EmulatorConfig, state: State) -> None:
        self._config = config
        self._state = state
        self._key, self._secret = config.signing_key
        self.urls = list(config.webhook_urls)
        self.drop = False
        self.delay_s = 0.0
        self.stats = {
            "queued": 0,
            "delivered": 0,
            "failed": 0,
            "dropped": 0,  # by the drop switch (fault injection)
            "overflowed": 0,  # by a full sender queue, as the real server drops them
            "retries": 0,
        }
        self._dropped_since_sent = 0  # goes out as numDropped with the next event sent
        # Recent deliveries: {"event", "room", "url", "status", "attempts", "error", "queued_ms" (event
        # to its delivery's start: time waiting behind its sender), "took_ms" (the POSTs),
        # "sent_at" (the first POST's start, wall clock), "posted_at" (when its body was written
        # to the socket, wall clock), "participant", "participant_kind"}.
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._queues: list[asyncio.Queue[_Queued]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        # A delivery's "posted_at": when its body went to the socket (no await between this
        # hook and the write), so a receiver's share can be told from this sender's.
        body_sent = aiohttp.TraceConfig()
        body_sent.on_request_chunk_sent.append(_stamp_body_sent)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.webhook_timeout_s),
            trace_configs=[body_sent],
        )
        n = max(1, self._config.webhook_senders)
        self._queues = [asyncio.Queue() for _ in range(n)]
        self._tasks = [asyncio.create_task(self._sender(q)) for q in self._queues]

    async def stop(self, flush_timeout: float = 1.0) -> None:
        if self._session is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), flush_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._session.close()
        self._session = None
        self._tasks = []
        self._queues = []

    async def flush(self) -> None:
        """Wait until every queued event was delivered (or given up)."""
        for q in self._queues:
            await q.join()

    def emit(
        self,
        event: str,
        room: Room,
        participant: Participant | None = None,
        track: Track | None = None,
    ) -> None:
        about = {
            "participant": participant.identity if participant else None,
            "participant_kind": (
                ("AGENT" if participant.is_agent else "STANDARD") if participant else None
            ),
        }
        self._state.events.append(
            {
                "event": event,
                "room": room.name,
                "room_sid": room.sid,
                **about,
                "participant_sid": participant.sid if participant else None,
                "track": track.sid if track else None,
                "t": time.time(),
            }
        )
        if not self.urls or not self._queues:
            return
        if self.drop:
            self.stats["dropped"] += 1
            return
        queue = self._queues[fnv1a_32(room.name.encode()) % len(self._queues)]
        if queue.qsize() >= self._config.webhook_queue_size:
            self.stats["overflowed"] += 1
            self._dropped_since_sent += 1
            logger.info(
                "webhook %s of room %s dropped: its sender's queue is full", event, room.name
            )
            return
        self.stats["queued"] += 1
        payload = _payload(event, room, participant, track)
        queue.put_nowait((asyncio.get_running_loop().time(), event, room.name, payload, about))

    async def _sender(self, queue: asyncio.Queue[_Queued]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            emitted_at, event, room, payload, about = await queue.get()
            try:
                wait = emitted_at + self.delay_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._dropped_since_sent:  # as the real server: counted into the next sent
                    payload["numDropped"] = self._dropped_since_sent
                    self._dropped_since_sent = 0
                body = json.dumps(payload, separators=(",", ":"))
                await self._deliver(event, room, body, emitted_at, about)
            except asyncio.CancelledError:
                raise
            except Exception:  # a sender must survive anything
                logger.exception("webhook delivery crashed")
            finally:
                queue.task_done()

    async def _deliver(
        self, event: str, room: str, body: str, emitted_at: float, about: dict[str, Any]
    ) -> None:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        data = body.encode()
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Authorization": webhook_token(self._key, self._secret, digest),
        }
        for url in self.urls:
            started, sent_at = loop.time(), time.time()
            stamps: dict[str, float] = {}
            status: int | None = None
            error = ""
            attempts = 0
            for attempt in range(self._config.webhook_retries + 1):
                attempts = attempt + 1
                if attempt:
                    self.stats["retries"] += 1
                    await asyncio.sleep(self._config.webhook_backoff_s * 2 ** (attempt - 1))
                try:
                    async with self._session.post(
                        url, data=data, headers=headers, trace_request_ctx=stamps
                    ) as resp:
                        status = resp.status
                        await resp.read()
                    if 200 <= status < 300:
                        error = ""
                        break
                    error = f"status {status}"
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status, error = None, repr(exc)
            ok = not error
            self.stats["delivered" if ok else "failed"] += 1
            if not ok:
                logger.warning("webhook %s to %s failed: %s", event, url, error)
            self.deliveries.append(
                {
                    "event": event,
                    "room": room,
                    "url": url,
                    "status": status,
                    "attempts": attempts,
                    "error": error,
                    "queued_ms": round((started - emitted_at) * 1000, 1),
                    "took_ms": round((loop.time() - started) * 1000, 1),
                    "sent_at": sent_at,
                    "posted_at": stamps.get("posted_at"),
                    **about,
                }
            )


async def _stamp_body_sent(
    _session: aiohttp.ClientSession,
    context: Any,
    _params: aiohttp.TraceRequestChunkSentParams,
) -> None:
    """The first attempt's body write: the wall-clock time it left for the receiver."""
    context.trace_request_ctx.setdefault("posted_at", time.time())


def fnv1a_32(data: bytes) -> int:
    """The hash the real server's webhook pool shards by (FNV-1a, 32 bits)."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _payload(
    event: str, room: Room, participant: Participant | None, track: Track | None
) -> dict[str, Any]:
    """The protojson of the ``WebhookEvent`` (lowerCamelCase, zero values left out), built
    from cached renderings of the room and track: the hot path of a busy emulator."""
    by_ref = event in TRACK_EVENTS
    out: dict[str, Any] = {"event": event}
    if by_ref:
        out["room"] = {"sid": room.sid, "name": room.name} if room.name else {"sid": room.sid}
    else:
        if room.webhook_cache is None:
            base = room.proto()
            base.ClearField("num_participants")
            base.ClearField("num_publishers")
            room.webhook_cache = MessageToDict(base)
        rendered = dict(room.webhook_cache)
        counts = room.proto_counts()
        if counts[0]:
            rendered["numParticipants"] = counts[0]
        if counts[1]:
            rendered["numPublishers"] = counts[1]
        out["room"] = rendered
    if participant is not None:
        out["participant"] = (
            {"sid": participant.sid, "identity": participant.identity}
            if by_ref
            else MessageToDict(participant.proto())
        )
    if track is not None:
        if track.webhook_cache is None:
            track.webhook_cache = MessageToDict(track.proto())
        out["track"] = track.webhook_cache
    out["id"] = ids.guid(ids.EVENT)
    out["createdAt"] = str(int(time.time()))
    return out
