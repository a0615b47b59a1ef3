"""A small energy VAD standing in for the API's server-side turn detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agent_worker.realtime_standin.speech import SAMPLE_RATE, rms_dbfs

_FRAME_MS = 20
_FRAME_BYTES = SAMPLE_RATE * 2 * _FRAME_MS // 1000
_START_FRAMES = 3  # 60 ms of speech before speech_started
# semantic_vad has no silence setting; its eagerness maps to one
_EAGERNESS_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 400}


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: Literal["started", "stopped"]
    at_ms: int


class EnergyVad:
    def __init__(self) -> None:
        self.enabled = False
        self.threshold_dbfs = -40.0
        self.silence_ms = 500
        self.prefix_ms = 300
        self.reset()

    def reset(self) -> None:
        self._pending = b""
        self._position_ms = 0
        self._speaking = False
        self._speech_run = 0
        self._silence_run_ms = 0

    def configure(self, detection: dict[str, Any] | None) -> None:
        self.enabled = detection is not None
        if detection is None:
            return
        if detection.get("type") == "semantic_vad":
            eagerness = str(detection.get("eagerness") or "auto")
            self.silence_ms = _EAGERNESS_SILENCE_MS.get(eagerness, 800)
            self.threshold_dbfs = -40.0
        else:
            self.silence_ms = int(detection.get("silence_duration_ms") or 500)
            # threshold 0..1 (probability in the API) mapped onto -60..-20 dBFS
            threshold = float(detection.get("threshold") or 0.5)
            self.threshold_dbfs = -60.0 + 40.0 * threshold
            self.prefix_ms = int(detection.get("prefix_padding_ms") or 300)

    def feed(self, pcm: bytes) -> list[VadEvent]:
        if not self.enabled:
            return []
        events: list[VadEvent] = []
        data = self._pending + pcm
        usable = len(data) - len(data) % _FRAME_BYTES
        for start in range(0, usable, _FRAME_BYTES):
            loud = rms_dbfs(data[start : start + _FRAME_BYTES]) > self.threshold_dbfs
            self._position_ms += _FRAME_MS
            if not self._speaking:
                self._speech_run = self._speech_run + 1 if loud else 0
                if self._speech_run >= _START_FRAMES:
                    self._speaking = True
                    self._silence_run_ms = 0
                    began = self._position_ms - _START_FRAMES * _FRAME_MS
                    events.append(VadEvent("started", max(0, began - self.prefix_ms)))
            else:
                self._silence_run_ms = 0 if loud else self._silence_run_ms + _FRAME_MS
                if self._silence_run_ms >= self.silence_ms:
                    self._speaking = False
                    self._speech_run = 0
                    events.append(VadEvent("stopped", self._position_ms - self._silence_run_ms))
        self._pending = data[usable:]
        return events
