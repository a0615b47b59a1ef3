"""A real LiveKit SDK participant for tests and demos, printing what it sees as JSON lines::

    python -m livekit_emulator.rtc.probe --url ws://10.203.1.1:7880 --token "$TOKEN" \\
        --tone 440 --duration 10 --stdin-control

Events (one JSON object per line, ``t_ms`` since start): ``connected`` (``connect_ms`` as
``Room.connect`` took), ``published`` (``publish_ms`` as ``publish_track`` took),
``participant_connected``, ``participant_disconnected``, ``track_subscribed``,
``track_unsubscribed``, ``local_track_subscribed`` (someone subscribed to ours),
``attributes_changed``, ``data_received``, ``data_sent``, ``rpc_received``, ``rpc_result``,
``audio`` (per subscribed track: frames, non-silent frames, peak RMS; on the first non-silent
frame and at the end), ``left``, ``error``. With ``--stdin-control`` it leaves when stdin
closes or reads a line; otherwise after ``--duration`` seconds. Needs the ``livekit`` (rtc)
package, and an interface other than loopback (see ``livekit_emulator.netns``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

SAMPLE_RATE = 48_000
FRAME_MS = 10
SILENCE_RMS = 50.0  # int16 RMS under which a frame counts as silent

_t0 = time.perf_counter()


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "t_ms": round((time.perf_counter() - _t0) * 1000, 1), **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def play_tone(source: Any, frequency: float, stop: asyncio.Event) -> None:
    from livekit import rtc

    samples = SAMPLE_RATE * FRAME_MS // 1000
    phase = 0
    while not stop.is_set():
        t = (np.arange(samples) + phase) / SAMPLE_RATE
        pcm = (np.sin(2 * math.pi * frequency * t) * 8000).astype(np.int16)
        phase += samples
        frame = rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, samples)
        await source.capture_frame(frame)  # paced by the source's queue


async def measure(track: Any, owner: str, stats: dict[str, dict[str, Any]]) -> None:
    from livekit import rtc

    entry = stats.setdefault(
        track.sid, {"from": owner, "frames": 0, "nonsilent": 0, "peak_rms": 0.0}
    )
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    async for ev in stream:
        pcm = np.frombuffer(ev.frame.data, dtype=np.int16).astype(np.float64)
        rms = float(np.sqrt(np.mean(pcm * pcm))) if pcm.size else 0.0
        entry["frames"] += 1
        entry["peak_rms"] = max(entry["peak_rms"], round(rms, 1))
        if rms >= SILENCE_RMS:
            entry["nonsilent"] += 1
            if entry["nonsilent"] == 1:
                emit("audio", track_sid=track.sid, first_nonsilent=True, **entry)


async def wait_for_leave(args: argparse.Namespace) -> None:
    if not args.stdin_control:
        await asyncio.sleep(args.duration)
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.readline(), args.duration)


async def run(args: argparse.Namespace) -> int:
    from livekit import rtc

    room = rtc.Room()
    stats: dict[str, dict[str, Any]] = {}
    tasks: set[asyncio.Task[None]] = set()

    @room.on("participant_connected")
    def _joined(p: Any) -> None:
        emit("participant_connected", identity=p.identity, sid=p.sid, kind=int(p.kind))

    @room.on("participant_disconnected")
    def _left(p: Any) -> None:
        emit("participant_disconnected", identity=p.identity, sid=p.sid)

    @room.on("participant_attributes_changed")
    def _attributes(changed: dict[str, str], p: Any) -> None:
        emit("attributes_changed", identity=p.identity, changed=dict(changed))

    @room.on("data_received")
    def _data(packet: Any) -> None:
        sender = packet.participant.identity if packet.participant else ""
        text = bytes(packet.data).decode(errors="replace")
        emit("data_received", identity=sender, topic=packet.topic, text=text)

    async def _echo(data: Any) -> str:
        emit("rpc_received", identity=data.caller_identity, payload=data.payload)
        return data.payload.upper()

    @room.on("local_track_subscribed")
    def _local_subscribed(track: Any) -> None:
        emit("local_track_subscribed", track_sid=track.sid)

    @room.on("track_unsubscribed")
    def _unsubscribed(track: Any, pub: Any, p: Any) -> None:
        emit("track_unsubscribed", identity=p.identity, track_sid=pub.sid)

    @room.on("track_published")
    def _published(pub: Any, p: Any) -> None:
        if not args.auto_subscribe and pub.kind == rtc.TrackKind.KIND_AUDIO:
            pub.set_subscribed(True)  # as livekit-agents' AutoSubscribe.AUDIO_ONLY does

    @room.on("track_subscribed")
    def _subscribed(track: Any, pub: Any, p: Any) -> None:
        emit("track_subscribed", identity=p.identity, track_sid=pub.sid, kind=int(track.kind))
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            task = asyncio.create_task(measure(track, p.identity, stats))
            tasks.add(task)

    disconnected = asyncio.Event()

    @room.on("disconnected")
    def _disconnected(reason: Any) -> None:
        emit("disconnected", reason=str(reason))
        disconnected.set()

    started = time.perf_counter()
    try:
        room_options = rtc.RoomOptions(auto_subscribe=args.auto_subscribe)
        await asyncio.wait_for(
            room.connect(args.url, args.token, room_options), args.connect_timeout
        )
        if not args.auto_subscribe:
            for remote in room.remote_participants.values():
                for remote_pub in remote.track_publications.values():
                    _published(remote_pub, remote)
    except Exception as exc:
        emit("error", stage="connect", error=f"{type(exc).__name__}: {exc}")
        return 2
    emit(
        "connected",
        connect_ms=round((time.perf_counter() - started) * 1000, 1),
        sid=room.local_participant.sid,
        room_sid=await room.sid,
        others=[p.identity for p in room.remote_participants.values()],
        attributes={p.identity: dict(p.attributes) for p in room.remote_participants.values()},
    )
    room.local_participant.register_rpc_method("probe.echo", _echo)
    if args.send_data:
        await room.local_participant.publish_data(args.send_data, reliable=True, topic="probe")
        emit("data_sent", text=args.send_data)
    if args.rpc_to:
        started = time.perf_counter()
        try:
            answer = await room.local_participant.perform_rpc(
                destination_identity=args.rpc_to, method="probe.echo", payload="ping"
            )
            emit("rpc_result", response=answer, ms=round((time.perf_counter() - started) * 1000, 1))
        except Exception as exc:
            emit("error", stage="rpc", error=f"{type(exc).__name__}: {exc}")
    stop = asyncio.Event()
    if args.tone:
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track(args.track_name, source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        started = time.perf_counter()
        try:
            pub = await room.local_participant.publish_track(track, options)
        except Exception as exc:
            emit("error", stage="publish", error=f"{type(exc).__name__}: {exc}")
            await room.disconnect()
            return 3
        emit(
            "published",
            publish_ms=round((time.perf_counter() - started) * 1000, 1),
            track_sid=pub.sid,
        )
        tasks.add(asyncio.create_task(play_tone(source, args.tone, stop)))
    leave = asyncio.create_task(wait_for_leave(args))
    gone = asyncio.create_task(disconnected.wait())
    await asyncio.wait([leave, gone], return_when=asyncio.FIRST_COMPLETED)
    leave.cancel()
    gone.cancel()
    stop.set()
    for sid, entry in stats.items():
        emit("audio", track_sid=sid, final=True, **entry)
    await room.disconnect()
    for task in tasks:
        task.cancel()
    emit("left")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tone", type=float, default=0.0, help="publish a sine tone (Hz)")
    parser.add_argument("--track-name", default="probe-mic")
    parser.add_argument("--duration", type=float, default=10.0, help="longest stay (s)")
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    parser.add_argument(
        "--no-auto-subscribe",
        dest="auto_subscribe",
        action="store_false",
        help="subscribe to audio tracks one by one (set_subscribed)",
    )
    parser.add_argument("--send-data", default="", help="publish this text (topic 'probe')")
    parser.add_argument("--rpc-to", default="", help="call probe.echo on this participant")
    parser.add_argument("--stdin-control", action="store_true", help="leave when stdin closes")
    args = parser.parse_args()
    code = asyncio.run(run(args))
    # Everything is reported by now. The SDK's native threads (libwebrtc) now and then abort
    # the interpreter's teardown (SIGABRT after a clean leave), so skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
