"""One Realtime WebSocket connection: session state, input audio buffer, server VAD and
responses streamed as synthetic speech."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent_worker.realtime_standin import protocol
from agent_worker.realtime_standin.config import StandinConfig, StandinStats
from agent_worker.realtime_standin.speech import SAMPLE_RATE, rms_dbfs, speech_chunks, split_pcm
from agent_worker.realtime_standin.vad import EnergyVad, VadEvent

log = logging.getLogger("agent_worker.realtime_standin")

Send = Callable[[dict[str, Any]], Awaitable[None]]
_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
_CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.truncate",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)


class RealtimeConnection:
    def __init__(self, send: Send, config: StandinConfig, stats: StandinStats, model: str) -> None:
        self._send = send
        self._config = config
        self._stats = stats
        self.session = protocol.default_session(model)
        self._items: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._buffer = bytearray()
        self._vad = EnergyVad()
        self._response_task: asyncio.Task[None] | None = None
        self._response_id: str | None = None
        self._cancel_reason: str | None = None
        self._last_user_text: str | None = None

    async def start(self) -> None:
        self._vad.configure(self._turn_detection())
        await self._send({"type": "session.created", "event_id": protocol.new_id("event"),
                          "session": self.session})  # fmt: skip

    async def close(self) -> None:
        if self._response_task is not None:
            self._response_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._response_task

    async def handle_text(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self._send(protocol.error_event(
                f"We could not parse the JSON body of your request. ({exc.msg})",
                code="invalid_json"))  # fmt: skip
            return
        if not isinstance(event, dict) or "type" not in event:
            await self._send(protocol.error_event(
                "Missing required parameter: 'type'.", code="missing_required_parameter",
                param="type"))  # fmt: skip
            return
        self._stats.client_events[str(event["type"])] += 1
        try:
            await self._dispatch(event)
        except protocol.RequestError as exc:
            await self._send(protocol.error_event(
                exc.message, code=exc.code, param=exc.param, error_type=exc.error_type,
                client_event_id=event.get("event_id")))  # fmt: skip

    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "session.update":
            await self._on_session_update(event)
        elif kind == "input_audio_buffer.append":
            await self._on_append(event)
        elif kind == "input_audio_buffer.commit":
            await self._commit(explicit=True)
        elif kind == "input_audio_buffer.clear":
            self._buffer.clear()
            self._vad.reset()
            await self._emit("input_audio_buffer.cleared")
        elif kind == "conversation.item.create":
            await self._on_item_create(event)
        elif kind == "conversation.item.delete":
            await self._on_item_delete(event)
        elif kind == "conversation.item.truncate":
            await self._on_item_truncate(event)
        elif kind == "conversation.item.retrieve":
            item = self._require_item(str(event.get("item_id")), "retrieve")
            await self._emit("conversation.item.retrieved", item=item)
        elif kind == "response.create":
            await self._on_response_create(event)
        elif kind == "response.cancel":
            await self._on_response_cancel(event)
        else:
            supported = ", ".join(f"'{name}'" for name in _CLIENT_EVENTS)
            raise protocol.RequestError(
                f"Invalid value: '{kind}'. Supported values are: {supported}.",
                code="invalid_value", param="type")  # fmt: skip

    async def _emit(self, kind: str, **fields: Any) -> None:
        await self._send({"type": kind, "event_id": protocol.new_id("event"), **fields})

    # session ---------------------------------------------------------------------------

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise protocol.RequestError(
                "Missing required parameter: 'session'.", code="missing_required_parameter",
                param="session")  # fmt: skip
        protocol.validate_session_update(update)
        self.session = protocol.merge_session(self.session, update)
        self._vad.configure(self._turn_detection())
        self._stats.sessions.append(self.session)
        await self._emit("session.updated", session=self.session)

    def _turn_detection(self) -> dict[str, Any] | None:
        detection: dict[str, Any] | None = self.session["audio"]["input"].get("turn_detection")
        return detection

    # input audio -----------------------------------------------------------------------

    async def _on_append(self, event: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(str(event.get("audio", "")), validate=True)
        except (binascii.Error, ValueError):
            raise protocol.RequestError(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                code="invalid_value", param="audio") from None  # fmt: skip
        self._buffer.extend(pcm)
        self._stats.audio_bytes_in += len(pcm)
        for vad_event in self._vad.feed(pcm):
            await self._on_vad(vad_event)

    async def _on_vad(self, vad_event: VadEvent) -> None:
        detection = self._turn_detection() or {}
        if vad_event.kind == "started":
            self._pending_item_id = protocol.new_id("item")
            await self._emit("input_audio_buffer.speech_started",
                             audio_start_ms=vad_event.at_ms, item_id=self._pending_item_id)  # fmt: skip
            if detection.get("interrupt_response", True) and self._response_task is not None:
                self._cancel_reason = "turn_detected"
            return
        await self._emit("input_audio_buffer.speech_stopped",
                         audio_end_ms=vad_event.at_ms, item_id=self._pending_item_id)  # fmt: skip
        item_id = await self._commit(explicit=False, item_id=self._pending_item_id)
        if item_id and detection.get("create_response", True) and self._response_task is None:
            await self._start_response({}, client_event_id=None)

    async def _commit(self, *, explicit: bool, item_id: str | None = None) -> str | None:
        buffered_ms = len(self._buffer) / _BYTES_PER_MS
        if buffered_ms < 100:
            if explicit:
                raise protocol.RequestError(
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"100ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                    code="input_audio_buffer_commit_empty")  # fmt: skip
            return None
        item_id = item_id or protocol.new_id("item")
        level = rms_dbfs(bytes(self._buffer))
        self._buffer.clear()
        previous = self._order[-1] if self._order else None
        await self._emit("input_audio_buffer.committed", previous_item_id=previous,
                         item_id=item_id)  # fmt: skip
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
                "role": "user", "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip
        self._append_item(item)
        await self._emit("conversation.item.added", previous_item_id=previous, item=item)
        transcription = self.session["audio"]["input"].get("transcription")
        if transcription:
            # no recognizer here: the transcript says what was heard, honestly
            transcript = f"(speech, {buffered_ms / 1000:.1f} s at {level:.0f} dBFS)"
            self._last_user_text = transcript
            await self._emit("conversation.item.input_audio_transcription.delta",
                             item_id=item_id, content_index=0, delta=transcript)  # fmt: skip
            await self._emit("conversation.item.input_audio_transcription.completed",
                             item_id=item_id, content_index=0, transcript=transcript,
                             usage={"type": "duration", "seconds": buffered_ms / 1000})  # fmt: skip
        await self._emit("conversation.item.done", previous_item_id=previous, item=item)
        return item_id

    # conversation ----------------------------------------------------------------------

    def _append_item(self, item: dict[str, Any], previous_item_id: str | None = None) -> None:
        if previous_item_id == "root":
            self._order.insert(0, item["id"])
        elif previous_item_id and previous_item_id in self._order:
            self._order.insert(self._order.index(previous_item_id) + 1, item["id"])
        else:
            self._order.append(item["id"])
        self._items[item["id"]] = item

    def _require_item(self, item_id: str, action: str) -> dict[str, Any]:
        if item_id not in self._items:
            raise protocol.RequestError(
                f"Error {action} item: the item with id '{item_id}' does not exist.",
                code=f"item_{action}_invalid_item_id", param="item_id")  # fmt: skip
        return self._items[item_id]

    async def _on_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or "type" not in item:
            raise protocol.RequestError(
                "Missing required parameter: 'item.type'.", code="missing_required_parameter",
                param="item.type")  # fmt: skip
        item = {**item, "object": "realtime.item", "status": "completed"}
        item.setdefault("id", protocol.new_id("item"))
        if item["id"] in self._items:
            raise protocol.RequestError(
                f"Item with item_id '{item['id']}' already exists.",
                code="item_create_duplicate_item_id", param="item.id")  # fmt: skip
        previous = event.get("previous_item_id")
        if previous not in (None, "root") and previous not in self._items:
            raise protocol.RequestError(
                f"Previous item with item_id '{previous}' not found.",
                code="previous_item_id_not_found", param="previous_item_id")  # fmt: skip
        self._append_item(item, previous)
        for part in item.get("content") or []:
            if item.get("role") == "user" and part.get("type") == "input_text":
                self._last_user_text = str(part.get("text", ""))
        index = self._order.index(item["id"])
        echoed_previous = self._order[index - 1] if index > 0 else None
        await self._emit("conversation.item.added", previous_item_id=echoed_previous, item=item)
        await self._emit("conversation.item.done", previous_item_id=echoed_previous, item=item)

    async def _on_item_delete(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id"))
        self._require_item(item_id, "delete")
        del self._items[item_id]
        self._order.remove(item_id)
        await self._emit("conversation.item.deleted", item_id=item_id)

    async def _on_item_truncate(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id"))
        self._require_item(item_id, "truncate")
        await self._emit("conversation.item.truncated", item_id=item_id,
                         content_index=event.get("content_index", 0),
                         audio_end_ms=event.get("audio_end_ms", 0))  # fmt: skip

    # responses -------------------------------------------------------------------------

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        if self._response_task is not None:
            raise protocol.RequestError(
                "Conversation already has an active response in progress: "
                f"{self._response_id}. Wait until the response is finished before creating "
                "a new one.", code="conversation_already_has_active_response")  # fmt: skip
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise protocol.RequestError("Invalid type for 'response'.", code="invalid_type",
                                        param="response")  # fmt: skip
        await self._start_response(params, client_event_id=event.get("event_id"))

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self._response_task is None or (wanted and wanted != self._response_id):
            raise protocol.RequestError("Cancellation failed: no active response found",
                                        code="response_cancel_not_active")  # fmt: skip
        self._cancel_reason = "client_cancelled"

    async def _start_response(self, params: dict[str, Any], client_event_id: Any) -> None:
        from agent_worker.realtime_standin.response import stream_response

        self._response_id = protocol.new_id("resp")
        self._cancel_reason = None

        async def _run() -> None:
            try:
                await stream_response(self, params)
            except (ConnectionError, RuntimeError) as exc:  # the client went away
                log.debug("response stream ended early: %s", exc)
            finally:
                self._response_task = None
                self._response_id = None

        self._response_task = asyncio.create_task(_run(), name="standin-response")

    # accessors for the response streamer
    @property
    def response_id(self) -> str:
        assert self._response_id is not None
        return self._response_id

    @property
    def cancel_reason(self) -> str | None:
        return self._cancel_reason

    @property
    def config(self) -> StandinConfig:
        return self._config

    @property
    def stats(self) -> StandinStats:
        return self._stats

    @property
    def last_item_id(self) -> str | None:
        return self._order[-1] if self._order else None

    @property
    def last_user_text(self) -> str | None:
        return self._last_user_text

    def add_output_item(self, item: dict[str, Any]) -> None:
        self._append_item(item)

    async def emit(self, kind: str, **fields: Any) -> None:
        await self._emit(kind, **fields)

    def pcm_pieces(self, text: str) -> list[tuple[str, list[bytes]]]:
        return [
            (c.text, list(split_pcm(c.pcm, self._config.delta_ms))) for c in speech_chunks(text)
        ]
