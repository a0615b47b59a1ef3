"""Shapes of the OpenAI Realtime API (GA) server events, as the stand-in sends them.

Only what livekit-plugins-openai reads is guaranteed to be faithful; the rest follows the
public API reference closely enough that other clients are not surprised.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

SUPPORTED_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
)  # fmt: skip
SUPPORTED_MODALITIES = ({"audio"}, {"text"})
AUDIO_FORMAT = {"type": "audio/pcm", "rate": 24000}
DEFAULT_INSTRUCTIONS = "Your knowledge cutoff is 2023-10. You are a helpful assistant."
# The close code and reason the real API uses after a fatal request error.
CLOSE_CODE_REQUEST_ERROR = 3000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def default_session(model: str) -> dict[str, Any]:
    """The session object a fresh connection starts with (``session.created``)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "include": None,
        "audio": {
            "input": {
                "format": dict(AUDIO_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(AUDIO_FORMAT), "voice": "alloy", "speed": 1.0},
        },
    }


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Apply a ``session.update`` payload: nested objects merge, other values replace."""
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key in ("type", "object", "id"):
            continue
        if key == "audio" and isinstance(value, dict):
            for direction in ("input", "output"):
                part = value.get(direction)
                if isinstance(part, dict):
                    target = merged["audio"].setdefault(direction, {})
                    for sub_key, sub_value in part.items():
                        target[sub_key] = sub_value
            continue
        merged[key] = value
    return merged


class RequestError(Exception):
    """A client mistake the API answers with an ``error`` event."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str = "invalid_request_error",
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type
        self.fatal = fatal


def validate_session_update(session: dict[str, Any]) -> None:
    """The checks the real API makes that a misconfigured client would hit."""
    if session.get("type") not in (None, "realtime"):
        raise RequestError(
            f"Invalid value: '{session.get('type')}'. Supported values are: 'realtime'.",
            code="invalid_value",
            param="session.type",
        )
    modalities = session.get("output_modalities")
    if modalities is not None and set(modalities) not in SUPPORTED_MODALITIES:
        raise RequestError(
            "Invalid modalities: "
            f"{modalities}. Supported combinations are: ['text'] and ['audio'].",
            code="invalid_value",
            param="session.output_modalities",
        )
    output = (session.get("audio") or {}).get("output") or {}
    voice = output.get("voice")
    if voice is not None and voice not in SUPPORTED_VOICES:
        supported = ", ".join(f"'{v}'" for v in SUPPORTED_VOICES)
        raise RequestError(
            f"Invalid value: '{voice}'. Supported values are: {supported}.",
            code="invalid_value",
            param="session.audio.output.voice",
        )
    for direction in ("input", "output"):
        fmt = ((session.get("audio") or {}).get(direction) or {}).get("format")
        if fmt is not None and fmt.get("type") not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
            raise RequestError(
                f"Invalid value: '{fmt.get('type')}'.",
                code="invalid_value",
                param=f"session.audio.{direction}.format.type",
            )


def error_event(
    message: str,
    *,
    code: str | None,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": new_id("event"),
        "error": {
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }


def redact_key(api_key: str) -> str:
    """How the real API echoes a rejected key: its ends kept, the middle starred."""
    if len(api_key) <= 8:
        return "*" * len(api_key)
    return f"{api_key[:6]}{'*' * (len(api_key) - 10)}{api_key[-4:]}"


def invalid_key_error(api_key: str) -> dict[str, Any]:
    return error_event(
        f"Incorrect API key provided: {redact_key(api_key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def missing_key_error() -> dict[str, Any]:
    return error_event(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        code="missing_api_key",
    )


def unknown_model_error(model: str) -> dict[str, Any]:
    return error_event(
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def reply_text(instructions: str | None, last_user_text: str | None) -> str:
    """What the stand-in 'says': a greeting when asked to greet, else a travel answer."""
    asked = (instructions or "").lower()
    if "greet" in asked or "hello" in asked or not last_user_text:
        return (
            "Hello! I'm your travel assistant. Where would you like to go, "
            "and when are you planning to travel?"
        )
    topic = last_user_text.strip().rstrip("?.!")
    if len(topic) > 60:
        topic = topic[:60].rsplit(" ", 1)[0]
    return (
        f"Good question about {topic}. I'd suggest checking flight prices a few weeks ahead, "
        "and I can help you plan the days once you know your dates."
    )


def usage(input_tokens: int, output_text: str, audio_seconds: float) -> dict[str, Any]:
    text_tokens = max(1, len(output_text) // 4)
    audio_tokens = int(audio_seconds * 20)
    output_tokens = text_tokens + audio_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
    }
