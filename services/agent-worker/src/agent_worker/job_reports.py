"""Job processes → the worker's main process: what happened to each job.

livekit-agents runs every job in its own process. Rather than have each of them keep a
Redis connection and Prometheus files, a job sends small JSON datagrams over a Unix socket
that the main process owns; the main process turns them into metrics and worker events.
Datagrams on a local Unix socket are not lost silently: a full buffer is an error we log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable
from enum import StrEnum

import msgspec

log = logging.getLogger("agent_worker.job_reports")
_MAX_ERROR_CHARS = 600


class JobReportKind(StrEnum):
    JOINED = "joined"
    AUDIO_PUBLISHED = "audio_published"
    ENDED = "ended"
    FAILED = "failed"


class JobReport(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: JobReportKind
    job_id: str
    dispatch_id: str = ""
    room: str = ""
    agent_identity: str = ""
    participant_sid: str = ""
    reason: str = ""
    error: str = ""
    stage: str = ""
    # seconds since the job's assignment (joined, audio_published)
    seconds: float | None = None
    at_ms: int = 0
    pid: int = 0


def truncate_error(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


class JobReportSender:
    """Used in a job process; sending never blocks the job's event loop."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def send(self, report: JobReport) -> bool:
        if not report.at_ms:
            report = msgspec.structs.replace(report, at_ms=time.time_ns() // 1_000_000)
        report = msgspec.structs.replace(report, pid=os.getpid())
        try:
            self._sock.sendto(msgspec.json.encode(report), self._path)
            return True
        except OSError as exc:
            log.error("could not report %s for job %s: %s", report.kind, report.job_id, exc)
            return False

    def close(self) -> None:
        self._sock.close()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_report: Callable[[JobReport], None]) -> None:
        self._on_report = on_report

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            report = msgspec.json.decode(data, type=JobReport)
        except msgspec.ValidationError as exc:
            log.warning("ignored a malformed job report: %s", exc)
            return
        try:
            self._on_report(report)
        except Exception:
            log.exception("handling job report %s failed", report.kind)


class JobReportReceiver:
    """Owned by the main process: binds the socket and calls ``on_report`` for each report."""

    def __init__(self, on_report: Callable[[JobReport], None]) -> None:
        self._on_report = on_report
        self._dir = tempfile.mkdtemp(prefix="agent-worker-")
        self.path = os.path.join(self._dir, "jobs.sock")
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        # room for bursts of reports while the loop is busy
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_report), sock=sock
        )
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)
