"""The travel assistant: an ``Agent`` on the OpenAI Realtime model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, APIConnectOptions, APIError, llm
from livekit.plugins import openai

from agent_worker.config import JobConfig

log = logging.getLogger("agent_worker.assistant")

INSTRUCTIONS = """\
You are a friendly travel assistant on a voice call. Help the caller plan trips: \
destinations, when to go, how to get there, where to stay, what to see, rough budgets and \
the documents they may need. Ask one short question at a time to learn their dates, \
budget and interests. Keep answers brief and conversational: this is speech, so no lists, \
markdown or long numbers. If you are unsure of a fact that matters (visa rules, prices), \
say so and suggest where to check."""

GREETING = (
    "Greet the caller warmly in one sentence, say you are their travel assistant, "
    "and ask where they would like to go."
)


class TravelAssistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)

    async def on_enter(self) -> None:
        # greet as soon as the agent is in the room, before the caller says anything
        self.session.generate_reply(instructions=GREETING)


@dataclass(frozen=True)
class ModelVerdict:
    ok: bool
    error: str = ""


class WarmRealtimeModel(openai.realtime.RealtimeModel):
    """The Realtime model, whose first session is opened while the agent joins the room.

    Opening the model connection concurrently with the room join saves its handshake from
    the time to first audio, and tells early whether the model is usable (a bad key is a
    fatal ``invalid_api_key`` error on connect). ``AgentSession`` takes that same session
    over, so no extra connection is made.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._warm: openai.realtime.RealtimeSession | None = None
        self._verdict: asyncio.Future[ModelVerdict] | None = None
        self._fatal: asyncio.Future[str] | None = None

    def start_warm_session(self) -> None:
        loop = asyncio.get_running_loop()
        self._verdict = loop.create_future()
        self._fatal = loop.create_future()
        self._warm = super().session()
        self._warm.on("openai_server_event_received", self._on_server_event)
        self._warm.on("error", self._on_error)

    def _settle(self, verdict: ModelVerdict) -> None:
        if self._verdict is not None and not self._verdict.done():
            self._verdict.set_result(verdict)

    def _on_server_event(self, event: dict[str, Any]) -> None:
        if event.get("type") in ("session.created", "session.updated"):
            self._settle(ModelVerdict(ok=True))

    def _on_error(self, error: llm.RealtimeModelError) -> None:
        if error.recoverable:
            return
        described = describe_model_error(error)
        self._settle(ModelVerdict(ok=False, error=described))
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(described)

    async def fatal_error(self) -> str:
        """Resolves with the description of the first unrecoverable model error."""
        assert self._fatal is not None, "start_warm_session() first"
        return await asyncio.shield(self._fatal)

    async def verdict(self, within_s: float) -> ModelVerdict | None:
        """The model's answer to the first connection; None if it has not come in time."""
        if self._verdict is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(self._verdict), within_s)
        except TimeoutError:
            return None

    def session(self, *, turn_detection_disabled: bool = False) -> openai.realtime.RealtimeSession:
        warm, self._warm = self._warm, None
        if warm is not None and not turn_detection_disabled:
            return warm
        if warm is not None:
            asyncio.get_running_loop().create_task(close_quietly(warm))
        return super().session(turn_detection_disabled=turn_detection_disabled)

    async def discard_warm_session(self) -> None:
        warm, self._warm = self._warm, None
        if warm is not None:
            await close_quietly(warm)


async def close_quietly(session: openai.realtime.RealtimeSession) -> None:
    # a session that ended on a fatal error re-raises it from aclose
    with contextlib.suppress(APIError, llm.RealtimeError, asyncio.CancelledError):
        await session.aclose()


def describe_model_error(error: llm.RealtimeModelError) -> str:
    inner = error.error
    body = getattr(inner, "body", None)
    code = getattr(body, "code", None)
    message = getattr(body, "message", None)
    if code or message:
        return f"{code or 'error'}: {message or inner}"
    cause = inner.__cause__ if isinstance(inner, BaseException) else None
    return f"{inner}" + (f" ({cause})" if cause else "")


def build_model(config: JobConfig) -> WarmRealtimeModel:
    kwargs: dict[str, Any] = {}
    if config.openai_base_url:
        kwargs["base_url"] = config.openai_base_url
    return WarmRealtimeModel(
        model=config.model,
        voice=config.voice,
        # accepted for the record; the GA Realtime API (plugin 1.8.9) no longer takes it
        temperature=config.temperature,
        modalities=["text", "audio"],
        api_key=config.openai_api_key,
        conn_options=APIConnectOptions(max_retry=config.model_max_retry, timeout=10.0),
        **kwargs,
    )
