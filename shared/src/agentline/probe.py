"""A live session as a frontend does it, followed to "speaking" or to its failure.

POST /v1/sessions → join the room with the returned token (the real LiveKit SDK) → publish a
synthetic microphone → follow the dispatch's Server-Sent Events → see the agent's
ParticipantConnected and audio TrackSubscribed and receive non-silent frames. Used by
`make demo` and by `agentline doctor --probe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

SAMPLE_RATE = 48_000
FRAME_MS = 20
TONE_HZ = 440.0
UTTERANCE_MS = 700
TERMINAL = {"ended", "failed", "cancelled"}
STAGES = ("requested", "waiting", "dispatching", "dispatched", "assigned", "joined", "speaking")


@dataclass
class ProbeResult:
    ok: bool = False
    dispatch_id: str = ""
    room: str = ""
    state: str = ""
    reason: str = ""
    message: str = ""
    hint: str = ""
    detail: dict[str, str] = field(default_factory=dict)
    error: str = ""
    # state → ms after the dispatch was requested (the server's own timestamps)
    stage_at_ms: dict[str, int] = field(default_factory=dict)
    agent_identity: str = ""
    agent_connected_ms: int | None = None
    audio_subscribed_ms: int | None = None
    audio_frames: int = 0
    audible_frames: int = 0

    def timeline(self) -> list[tuple[str, int, int]]:
        """(stage, ms since requested, ms since the previous stage) for the stages reached."""
        out: list[tuple[str, int, int]] = []
        previous = 0
        for stage in (*STAGES, *sorted(TERMINAL)):
            if stage in self.stage_at_ms:
                at = self.stage_at_ms[stage]
                out.append((stage, at, at - previous))
                previous = at
        return out


async def _sse_events(client: httpx.AsyncClient, url: str) -> AsyncIterator[dict[str, Any]]:
    """The dispatch's transitions (``event: transition``) from its Server-Sent Events."""
    async with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
        response.raise_for_status()
        data: list[str] = []
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line == "":
                payload = "\n".join(data).strip()
                if payload and event in ("", "transition"):
                    yield json.loads(payload)
                elif payload and event == "error":
                    raise httpx.StreamError(f"event stream error: {payload}")
                data, event = [], ""


async def _publish_tone(source: Any, stop: asyncio.Event) -> None:
    """A short utterance (a tone burst), then silence: like a caller who says hello and waits.

    A continuous tone would keep the model's voice-activity detection in "user speaking" and
    interrupt every reply.
    """
    from livekit import rtc

    samples = SAMPLE_RATE * FRAME_MS // 1000
    step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
    silence = bytes(samples * 2)
    for index in itertools.count():
        if stop.is_set():
            return
        if index * FRAME_MS < UTTERANCE_MS:
            phase = step * samples * index
            pcm = array("h", (int(8000 * math.sin(phase + step * i)) for i in range(samples)))
            data = pcm.tobytes()
        else:
            data = silence
        await source.capture_frame(rtc.AudioFrame(data, SAMPLE_RATE, 1, samples))


_leaving: set[asyncio.Future[Any]] = set()  # late connects' disconnects, kept referenced


async def connect_bounded(room: Any, url: str, token: str, timeout_s: float) -> None:
    """``room.connect`` within ``timeout_s``, never cancelled: a cancelled connect strands the
    SDK's room-event handshake, and its FFI layer kills the whole process 15 s later
    (livekit/python-sdks#784). On timeout it finishes in the background and leaves the room."""
    connecting = asyncio.ensure_future(room.connect(url, token))
    try:
        await asyncio.wait_for(asyncio.shield(connecting), timeout_s)
    except TimeoutError:

        def leave(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and task.exception() is None:
                disconnect = asyncio.ensure_future(room.disconnect())
                _leaving.add(disconnect)
                disconnect.add_done_callback(_leaving.discard)

        connecting.add_done_callback(leave)
        raise


def _is_audible(pcm: memoryview) -> bool:
    values = pcm.cast("h") if pcm.format != "h" else pcm
    if len(values) == 0:
        return False
    energy = sum(v * v for v in values[:: max(1, len(values) // 240)])
    return math.sqrt(energy / max(1, len(values[:: max(1, len(values) // 240)]))) > 50


async def run_probe(
    api_url: str,
    api_key: str,
    *,
    agent_name: str | None = None,
    timeout_s: float = 30.0,
    min_audible_frames: int = 10,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    hang_up: bool = True,
) -> ProbeResult:
    """Run one session end to end; never raises for a failed session (see ``result.error``)."""
    from livekit import rtc

    result = ProbeResult()
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    def note(kind: str, payload: dict[str, Any]) -> None:
        if on_event:
            on_event(kind, payload)

    headers = {"Authorization": f"Bearer {api_key}"}
    room = rtc.Room()
    audio_done = asyncio.Event()
    stop_tone = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    source: rtc.AudioSource | None = None
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10.0) as client:
        try:
            body = {"identity": f"probe-{uuid.uuid4().hex[:8]}"}
            if agent_name:
                body["agent_name"] = agent_name
            response = await client.post("/v1/sessions", json=body)
            if response.status_code != 201:
                result.error = f"POST /v1/sessions answered {response.status_code}: {response.text}"
                return result
            created = response.json()
            session, dispatch = created["session"], created["dispatch"]
            result.dispatch_id, result.room = dispatch["id"], session["room"]
            note("session", {"dispatch_id": result.dispatch_id, "room": result.room})

            requested_at: list[int] = []

            async def follow() -> None:
                async for event in _sse_events(client, dispatch["events_url"]):
                    state = str(event.get("state", ""))
                    at = int(event.get("at_ms", 0))
                    if not requested_at:
                        requested_at.append(at)
                    result.stage_at_ms.setdefault(state, at - requested_at[0])
                    result.state = state
                    if state == "failed":
                        result.reason = str(event.get("reason", ""))
                        result.message = str(event.get("message", ""))
                        result.hint = str(event.get("hint", ""))
                        result.detail = dict(event.get("detail") or {})
                    note("state", {"state": state, "at_ms": result.stage_at_ms[state]})
                    if state in TERMINAL or state == "speaking":
                        return

            follower = asyncio.create_task(follow())
            tasks.append(follower)

            def on_participant(participant: rtc.RemoteParticipant) -> None:
                if result.agent_connected_ms is not None:
                    return
                if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                    result.agent_identity = participant.identity
                    result.agent_connected_ms = elapsed_ms()
                    note("agent_connected", {"identity": participant.identity})

            async def listen(track: rtc.Track) -> None:
                stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
                try:
                    async for frame_event in stream:
                        result.audio_frames += 1
                        if _is_audible(memoryview(frame_event.frame.data)):
                            result.audible_frames += 1
                        if result.audible_frames >= min_audible_frames:
                            audio_done.set()
                            return
                finally:
                    await stream.aclose()

            def on_track(track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
                if track.kind == rtc.TrackKind.KIND_AUDIO and (
                    participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                ):
                    result.audio_subscribed_ms = elapsed_ms()
                    note("audio_subscribed", {"identity": participant.identity})
                    tasks.append(asyncio.create_task(listen(track)))

            room.on("participant_connected", on_participant)
            room.on("track_subscribed", on_track)
            await connect_bounded(room, session["livekit_url"], session["token"], 15)
            for participant in room.remote_participants.values():
                on_participant(participant)
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            track = rtc.LocalAudioTrack.create_audio_track("probe-microphone", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await room.local_participant.publish_track(track, options)
            tasks.append(asyncio.create_task(_publish_tone(source, stop_tone)))
            note("caller_published", {"at_ms": elapsed_ms()})

            remaining = max(1.0, timeout_s - (time.monotonic() - started))
            await asyncio.wait_for(follower, remaining)
            if result.state == "speaking" and min_audible_frames > 0:
                remaining = max(1.0, timeout_s - (time.monotonic() - started))
                await asyncio.wait_for(audio_done.wait(), remaining)
            result.ok = result.state == "speaking" and result.audible_frames >= min_audible_frames
            if result.state == "speaking" and not result.ok:
                result.error = "the dispatch reached speaking but no audible frames arrived"
        except TimeoutError:
            result.error = (
                f"timed out after {timeout_s:.0f} s in state '{result.state or 'unknown'}'"
                f" ({result.audible_frames} audible agent frames)"
            )
        except (httpx.HTTPError, rtc.ConnectError, KeyError, ValueError) as error:
            result.error = f"{type(error).__name__}: {error}"
        finally:
            stop_tone.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if hang_up:
                with contextlib.suppress(Exception):
                    await room.disconnect()
                # The native audio source is released here, not left to interpreter exit
                # (one probe process aborted in livekit's audio thread as it exited).
                if source is not None:
                    with contextlib.suppress(Exception):
                        await source.aclose()
    return result
