"""The stand-in's wire protocol, driven by a raw WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
from typing import Any

import aiohttp

from agent_worker.realtime_standin import DEFAULT_STANDIN_KEY, running_standin
from agent_worker.realtime_standin.speech import rms_dbfs, synthesize

AUTH = {"Authorization": f"Bearer {DEFAULT_STANDIN_KEY}"}


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, **event: Any) -> None:
        await self.ws.send_str(json.dumps(event))

    async def next(self, kind: str | None = None, wait_s: float = 5) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), wait_s)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            event: dict[str, Any] = json.loads(msg.data)
            if kind is None or event["type"] == kind:
                return event

    async def until(self, kind: str) -> list[str]:
        seen: list[str] = []
        while True:
            event = await self.next()
            seen.append(event["type"])
            if event["type"] == kind:
                return seen


async def _connect(http: aiohttp.ClientSession, url: str, **headers: str) -> Client:
    ws = await http.ws_connect(f"{url}?model=gpt-realtime", headers=headers or AUTH)
    return Client(ws)


async def test_session_lifecycle_and_validation() -> None:
    async with running_standin() as s, aiohttp.ClientSession() as http:
        c = await _connect(http, s.ws_url)
        created = await c.next()
        assert created["type"] == "session.created"
        assert created["session"]["audio"]["output"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        await c.send(
            type="session.update",
            session={
                "type": "realtime",
                "instructions": "x",
                "audio": {"output": {"voice": "alloy"}},
            },
        )
        updated = await c.next()
        assert updated["type"] == "session.updated"
        assert updated["session"]["instructions"] == "x"
        await c.send(
            type="session.update",
            event_id="ev1",
            session={"audio": {"output": {"voice": "nobody"}}},
        )
        error = await c.next()
        assert error["type"] == "error"
        assert error["error"]["code"] == "invalid_value"
        assert error["error"]["param"] == "session.audio.output.voice"
        assert error["error"]["event_id"] == "ev1"
        await c.send(type="no.such.event")
        assert (await c.next())["error"]["param"] == "type"
        await c.ws.send_str("{not json")
        assert (await c.next())["error"]["code"] == "invalid_json"
        await c.send(type="input_audio_buffer.commit")
        assert (await c.next())["error"]["code"] == "input_audio_buffer_commit_empty"
        await c.send(type="response.cancel")
        assert (await c.next())["error"]["message"].startswith("Cancellation failed")


async def test_bad_key_and_model_get_the_real_api_errors() -> None:
    async with running_standin() as s, aiohttp.ClientSession() as http:
        for headers, code in (
            ({"Authorization": "Bearer sk-nope-0000000000"}, "invalid_api_key"),
            ({"X-Other": "1"}, "missing_api_key"),
        ):
            ws = await http.ws_connect(s.ws_url, headers=headers)
            event = json.loads((await ws.receive()).data)
            assert event["error"]["code"] == code
            closing = await ws.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 3000
        ws = await http.ws_connect(f"{s.ws_url}?model=gpt-3.5", headers=AUTH)
        assert json.loads((await ws.receive()).data)["error"]["code"] == "model_not_found"


async def test_conversation_items_and_response_order() -> None:
    async with running_standin() as s, aiohttp.ClientSession() as http:
        c = await _connect(http, s.ws_url)
        await c.next("session.created")
        item = {
            "id": "msg_1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Trains from Paris to Rome?"}],
        }
        await c.send(type="conversation.item.create", previous_item_id="root", item=item)
        added = await c.next("conversation.item.added")
        assert added["item"]["id"] == "msg_1"
        await c.send(type="conversation.item.create", item=item)
        assert (await c.next("error"))["error"]["code"] == "item_create_duplicate_item_id"
        await c.send(
            type="response.create",
            event_id="rc1",
            response={"metadata": {"client_event_id": "rc1"}},
        )
        created = await c.next("response.created")
        assert created["response"]["metadata"] == {"client_event_id": "rc1"}
        await c.send(type="response.create", event_id="rc2")
        seen = await c.until("response.done")
        assert "error" in seen  # the second create while one is active
        order = [t for t in dict.fromkeys(seen) if t != "error"]
        assert order == [
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_audio_transcript.delta",
            "response.output_audio.delta",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        assert s.stats.transcripts[-1].startswith("Good question about Trains from Paris to Rome")
        await c.send(type="conversation.item.delete", item_id="msg_1")
        assert (await c.next("conversation.item.deleted"))["item_id"] == "msg_1"
        await c.send(type="conversation.item.delete", item_id="msg_1")
        assert (await c.next("error"))["error"]["code"] == "item_delete_invalid_item_id"


async def test_server_vad_turn_creates_a_response_and_cancel_works() -> None:
    async with running_standin() as s, aiohttp.ClientSession() as http:
        c = await _connect(http, s.ws_url)
        await c.next("session.created")
        await c.send(
            type="session.update",
            session={
                "audio": {
                    "input": {
                        "transcription": {"model": "gpt-4o-mini-transcribe"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    }
                }
            },
        )
        await c.next("session.updated")
        speech = synthesize("Book me a hotel in Lisbon please.") + bytes(24000 * 2)  # + 1 s silence
        for start in range(0, len(speech), 4800):
            await c.send(
                type="input_audio_buffer.append",
                audio=base64.b64encode(speech[start : start + 4800]).decode(),
            )
        seen = await c.until("response.created")
        assert (
            seen.index("input_audio_buffer.speech_started")
            < seen.index("input_audio_buffer.speech_stopped")
            < seen.index("input_audio_buffer.committed")
        )
        assert "conversation.item.input_audio_transcription.completed" in seen
        await c.send(type="response.cancel")
        done = await c.next("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        assert s.stats.responses_cancelled == 1


def test_synthetic_speech_is_speech_like() -> None:
    pcm = synthesize("Hello! Where would you like to go?")
    seconds = len(pcm) / 48000
    assert 1.2 < seconds < 4.0
    assert -30 < rms_dbfs(pcm) < -8
    assert synthesize("Hello! Where would you like to go?") == pcm  # deterministic


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_console_script_serves_on_the_given_port() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent_worker.realtime_standin",
        "--port",
        str(port),
        "--pace",
        "0",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("stand-in did not start")
            c = await _connect(http, f"ws://127.0.0.1:{port}/v1/realtime")
            assert (await c.next())["type"] == "session.created"
            await c.ws.close()
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
