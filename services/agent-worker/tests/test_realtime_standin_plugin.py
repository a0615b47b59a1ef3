"""The real livekit-plugins-openai RealtimeModel against the stand-in, unmodified."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from livekit import rtc
from livekit.agents import APIError, llm
from livekit.plugins import openai

from agent_worker.realtime_standin import DEFAULT_STANDIN_KEY, StandinConfig, running_standin


async def _collect(gen: llm.GenerationCreatedEvent) -> tuple[str, list[rtc.AudioFrame]]:
    text_parts: list[str] = []
    frames: list[rtc.AudioFrame] = []
    async for message in gen.message_stream:

        async def _text(stream=message.text_stream) -> None:
            async for delta in stream:
                text_parts.append(delta)

        async def _audio(stream=message.audio_stream) -> None:
            async for frame in stream:
                frames.append(frame)

        await asyncio.gather(_text(), _audio())
    return "".join(text_parts), frames


async def test_plugin_greets_with_speech_audio() -> None:
    async with running_standin() as standin:
        model = openai.realtime.RealtimeModel(
            voice="alloy",
            temperature=0.8,
            modalities=["text", "audio"],
            api_key=DEFAULT_STANDIN_KEY,
            base_url=standin.url,
        )
        session = model.session()
        try:
            gen = await asyncio.wait_for(
                session.generate_reply(instructions="Greet the user warmly."), 5
            )
            text, frames = await asyncio.wait_for(_collect(gen), 10)
        finally:
            await session.aclose()
            await model.aclose()

    assert text.startswith("Hello! I'm your travel assistant.")
    assert frames, "no audio frames"
    assert {f.sample_rate for f in frames} == {24000}
    assert {f.num_channels for f in frames} == {1}
    seconds = sum(f.samples_per_channel for f in frames) / 24000
    assert 2.0 < seconds < 15.0
    # what the plugin configured arrived in the session
    sent = standin.stats.sessions[0]
    assert sent["audio"]["output"]["voice"] == "alloy"
    assert sent["output_modalities"] == ["audio"]
    assert standin.stats.responses_completed == 1


async def test_wrong_key_is_fatal_with_the_real_api_error() -> None:
    async with running_standin(StandinConfig(api_keys=frozenset({"sk-right"}))) as standin:
        model = openai.realtime.RealtimeModel(api_key="sk-wrong-key-123456", base_url=standin.url)
        session = model.session()
        errors: list[llm.RealtimeModelError] = []
        session.on("error", errors.append)
        try:
            with pytest.raises(llm.RealtimeError):
                await asyncio.wait_for(session.generate_reply(instructions="Greet."), 5)
            for _ in range(50):
                if any(not e.recoverable for e in errors):
                    break
                await asyncio.sleep(0.05)
        finally:
            # the plugin's session task ends with the fatal APIError; aclose re-raises it
            with contextlib.suppress(APIError):
                await session.aclose()
            await model.aclose()
    fatal = [e for e in errors if not e.recoverable]
    assert fatal, errors
    body = fatal[0].error.body  # type: ignore[union-attr]
    assert body.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-wro" in body.message
    assert standin.stats.rejected_keys >= 1
