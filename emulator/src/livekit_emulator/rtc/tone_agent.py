"""A real livekit-agents worker whose agent joins with ``ctx.connect()``, publishes a tone and
listens to the room: the recipe for running a stock worker against the emulator::

    LIVEKIT_URL=ws://10.203.1.1:PORT LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=... \\
        python -m livekit_emulator.rtc.tone_agent --agent-name tone-agent

It prints JSON lines (``t_ms`` since the job started): ``registered`` (worker id), then per
job ``job`` (room), ``connected`` (``connect_ms`` as ``ctx.connect()`` took), ``published``
(``publish_ms``), ``subscribed`` (``wait_for_subscription()`` returned: a participant
subscribed to its track), ``attributes_set`` (``lk.agent.state`` = speaking), ``heard`` (the
first non-silent frame from a remote participant). The worker runs until SIGTERM/SIGINT. Needs ``livekit-agents`` and an interface other than loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import time
from typing import Any

import numpy as np

SAMPLE_RATE = 48_000
FRAME_MS = 10


def emit(event: str, t0: float, **fields: Any) -> None:
    line = {"event": event, "t_ms": round((time.perf_counter() - t0) * 1000, 1), **fields}
    # The job runs in a child process sharing the worker's stdout.
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _tone(source: Any, frequency: float) -> None:
    from livekit import rtc

    samples = SAMPLE_RATE * FRAME_MS // 1000
    phase = 0
    while True:
        t = (np.arange(samples) + phase) / SAMPLE_RATE
        pcm = (np.sin(2 * math.pi * frequency * t) * 8000).astype(np.int16)
        phase += samples
        await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, samples))


async def _listen(track: Any, identity: str, t0: float) -> None:
    from livekit import rtc

    async for ev in rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1):
        pcm = np.frombuffer(ev.frame.data, dtype=np.int16).astype(np.float64)
        if pcm.size and float(np.sqrt(np.mean(pcm * pcm))) > 50:
            emit("heard", t0, identity=identity, track_sid=track.sid)
            return


async def entrypoint(ctx: Any) -> None:
    from livekit import rtc

    t0 = time.perf_counter()
    emit("job", t0, room=ctx.room.name, job_id=ctx.job.id)
    tasks: set[asyncio.Task[None]] = set()

    @ctx.room.on("track_subscribed")
    def _subscribed(track: Any, pub: Any, participant: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.add(asyncio.create_task(_listen(track, participant.identity, t0)))

    started = time.perf_counter()
    await ctx.connect()
    emit(
        "connected",
        t0,
        connect_ms=round((time.perf_counter() - started) * 1000, 1),
        identity=ctx.room.local_participant.identity,
    )
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    started = time.perf_counter()
    pub = await ctx.room.local_participant.publish_track(track, options)
    emit(
        "published",
        t0,
        publish_ms=round((time.perf_counter() - started) * 1000, 1),
        track_sid=pub.sid,
    )
    tasks.add(asyncio.create_task(_tone(source, float(os.environ.get("TONE_AGENT_HZ", "330")))))
    # livekit-agents' audio output plays nothing before its track has a subscriber.
    started = time.perf_counter()
    await pub.wait_for_subscription()
    emit("subscribed", t0, wait_ms=round((time.perf_counter() - started) * 1000, 1))
    # What livekit-agents' AgentSession announces while it talks.
    started = time.perf_counter()
    await ctx.room.local_participant.set_attributes({"lk.agent.state": "speaking"})
    emit("attributes_set", t0, ms=round((time.perf_counter() - started) * 1000, 1))


async def serve(agent_name: str) -> None:
    from livekit.agents import AgentServer

    t0 = time.perf_counter()
    server = AgentServer(
        ws_url=os.environ["LIVEKIT_URL"],
        api_key=os.environ["LIVEKIT_API_KEY"],
        api_secret=os.environ["LIVEKIT_API_SECRET"],
        num_idle_processes=1,
        port=0,
        initialize_process_timeout=30.0,
    )
    server.rtc_session(entrypoint, agent_name=agent_name)

    @server.on("worker_registered")
    def _registered(worker_id: str, *_: Any) -> None:
        emit("registered", t0, worker_id=worker_id, agent_name=agent_name)

    loop = asyncio.get_running_loop()
    run = asyncio.create_task(server.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-name", default="tone-agent")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    # The worker's own log (registration, job requests, process pool) on stderr.
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(serve(args.agent_name))


if __name__ == "__main__":
    main()
