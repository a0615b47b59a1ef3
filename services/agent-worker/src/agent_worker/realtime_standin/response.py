"""Streaming one response in the order the Realtime API uses:

response.created → response.output_item.added → conversation.item.added →
response.content_part.added → (transcript delta, audio deltas)* → audio/transcript done →
response.content_part.done → response.output_item.done → conversation.item.done →
response.done
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any

from agent_worker.realtime_standin import protocol
from agent_worker.realtime_standin.speech import SAMPLE_RATE

if TYPE_CHECKING:
    from agent_worker.realtime_standin.session import RealtimeConnection


def _response_object(
    conn: RealtimeConnection, params: dict[str, Any], status: str, output: list[Any]
) -> dict[str, Any]:
    modalities = params.get("output_modalities") or conn.session["output_modalities"]
    return {
        "object": "realtime.response",
        "id": conn.response_id,
        "status": status,
        "status_details": None,
        "output": output,
        "conversation_id": "conv_standin",
        "output_modalities": modalities,
        "max_output_tokens": params.get("max_output_tokens", conn.session["max_output_tokens"]),
        "audio": {"output": conn.session["audio"]["output"]},
        "usage": None,
        "metadata": params.get("metadata"),
    }


async def stream_response(conn: RealtimeConnection, params: dict[str, Any]) -> None:
    modalities = params.get("output_modalities") or conn.session["output_modalities"]
    audio = "audio" in modalities
    in_conversation = params.get("conversation") != "none"
    resp_id = conn.response_id
    item_id = protocol.new_id("item")
    await conn.emit("response.created", response=_response_object(conn, params, "in_progress", []))

    item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message",
                            "status": "in_progress", "role": "assistant", "content": []}  # fmt: skip
    where = {"response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0}
    await conn.emit("response.output_item.added", response_id=resp_id, output_index=0, item=item)
    previous = conn.last_item_id
    if in_conversation:
        conn.add_output_item(item)
        await conn.emit("conversation.item.added", previous_item_id=previous, item=item)
    part: dict[str, Any] = {"type": "audio", "transcript": ""} if audio else {"type": "text",
                                                                               "text": ""}  # fmt: skip
    await conn.emit("response.content_part.added", **where, part=part)

    instructions = params.get("instructions") or None
    text = protocol.reply_text(instructions, conn.last_user_text)
    said: list[str] = []
    audio_seconds = 0.0
    if conn.config.first_audio_delay_ms:
        await asyncio.sleep(conn.config.first_audio_delay_ms / 1000)
    for word, pieces in conn.pcm_pieces(text):
        if conn.cancel_reason:
            break
        said.append(word)
        if not audio:
            await conn.emit("response.output_text.delta", **where, delta=word)
            await asyncio.sleep(0)
            continue
        await conn.emit("response.output_audio_transcript.delta", **where, delta=word)
        for pcm in pieces:
            await conn.emit("response.output_audio.delta", **where,
                            delta=base64.b64encode(pcm).decode())  # fmt: skip
            conn.stats.audio_bytes_out += len(pcm)
            seconds = len(pcm) / (SAMPLE_RATE * 2)
            audio_seconds += seconds
            # pace 0 still yields, so cancel events are read between deltas
            await asyncio.sleep(seconds * conn.config.pace)
            if conn.cancel_reason:
                break

    transcript = "".join(said)
    cancelled = conn.cancel_reason is not None
    if audio:
        await conn.emit("response.output_audio.done", **where)
        await conn.emit("response.output_audio_transcript.done", **where, transcript=transcript)
        final_part: dict[str, Any] = {"type": "audio", "transcript": transcript}
        content = [{"type": "output_audio", "transcript": transcript}]
    else:
        await conn.emit("response.output_text.done", **where, text=transcript)
        final_part = {"type": "text", "text": transcript}
        content = [{"type": "output_text", "text": transcript}]
    await conn.emit("response.content_part.done", **where, part=final_part)

    item = {**item, "status": "incomplete" if cancelled else "completed", "content": content}
    if in_conversation:
        conn.add_output_item(item)
    await conn.emit("response.output_item.done", response_id=resp_id, output_index=0, item=item)
    if in_conversation:
        await conn.emit("conversation.item.done", previous_item_id=previous, item=item)

    done = _response_object(conn, params, "cancelled" if cancelled else "completed", [item])
    if cancelled:
        done["status_details"] = {"type": "cancelled", "reason": conn.cancel_reason}
    done["usage"] = protocol.usage(len(instructions or "") // 4 + 10, transcript, audio_seconds)
    await conn.emit("response.done", response=done)
    conn.stats.transcripts.append(transcript)
    if cancelled:
        conn.stats.responses_cancelled += 1
    else:
        conn.stats.responses_completed += 1
