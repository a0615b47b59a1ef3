"""Synthetic speech-like audio: PCM16 mono at 24 kHz, the Realtime API's output format.

Not intelligible speech, but shaped like it so that level meters, VAD and codecs downstream
behave as they would with a voice: voiced syllables (a glottal-like harmonic series under two
vowel formants, with a falling pitch contour), short fricative bursts, word gaps and longer
pauses at punctuation. Deterministic for a given text, so tests can compare outputs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2

# (F1, F2) in Hz of a few vowels; a syllable picks one.
_VOWEL_FORMANTS = ((730, 1090), (530, 1840), (270, 2290), (570, 840), (300, 870), (660, 1720))
_WORD_GAP_S = 0.07
_PUNCT_PAUSE_S = 0.28
_SYLLABLE_S = 0.16


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """One streaming unit: the transcript text it carries and its PCM16 bytes."""

    text: str
    pcm: bytes

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / (SAMPLE_RATE * BYTES_PER_SAMPLE)


def _rng_for(text: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def _syllable(f0: float, formants: tuple[int, int], duration_s: float) -> np.ndarray:
    n = int(SAMPLE_RATE * duration_s)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    # pitch glides down a little within the syllable, as in declarative speech
    f0_track = f0 * (1.0 - 0.08 * t / max(duration_s, 1e-3))
    phase = 2 * math.pi * np.cumsum(f0_track) / SAMPLE_RATE
    wave = np.zeros(n)
    f1, f2 = formants
    for k in range(1, 30):
        freq = k * f0
        if freq > SAMPLE_RATE / 2.4:
            break
        # harmonic amplitude: 1/k source roll-off times two formant resonances
        gain = (1.0 / k) * (
            math.exp(-(((freq - f1) / 120.0) ** 2)) + 0.6 * math.exp(-(((freq - f2) / 180.0) ** 2))
        )
        wave += (gain + 0.02 / k) * np.sin(k * phase)
    envelope = np.sin(np.pi * np.linspace(0.0, 1.0, n)) ** 0.6
    return wave * envelope


def _fricative(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    n = int(SAMPLE_RATE * duration_s)
    noise = rng.standard_normal(n)
    # first difference tilts the noise spectrum upwards, like /s/ or /f/
    noise = np.diff(noise, prepend=0.0)
    return 0.08 * noise * np.hanning(n)


def _silence(duration_s: float) -> np.ndarray:
    return np.zeros(int(SAMPLE_RATE * duration_s))


def _to_pcm16(signal: np.ndarray, peak: float) -> bytes:
    if signal.size == 0:
        return b""
    top = float(np.max(np.abs(signal))) or 1.0
    scaled = np.clip(signal / top * peak * 32767.0, -32768, 32767)
    return scaled.astype("<i2").tobytes()


def synthesize_word(word: str, rng: np.random.Generator, base_f0: float) -> np.ndarray:
    letters = re.sub(r"[^A-Za-z0-9]", "", word) or "a"
    syllables = max(1, round(len(letters) / 3))
    parts: list[np.ndarray] = []
    for index in range(syllables):
        if rng.random() < 0.35:
            parts.append(_fricative(rng, float(rng.uniform(0.03, 0.07))))
        f0 = base_f0 * float(rng.uniform(0.92, 1.1))
        formants = _VOWEL_FORMANTS[int(rng.integers(len(_VOWEL_FORMANTS)))]
        duration = _SYLLABLE_S * float(rng.uniform(0.75, 1.3))
        parts.append(_syllable(f0, formants, duration) * (1.0 if index == 0 else 0.85))
    return np.concatenate(parts)


def speech_chunks(text: str, *, peak: float = 0.35) -> Iterator[SpeechChunk]:
    """One chunk per word: its transcript delta (with the following space) and its audio."""
    rng = _rng_for(text)
    words = text.split()
    base_f0 = float(rng.uniform(110.0, 190.0))
    for index, word in enumerate(words):
        # intonation: pitch declines over the sentence and resets after punctuation
        f0 = base_f0 * (1.0 - 0.15 * index / max(len(words), 1))
        audio = synthesize_word(word, rng, f0)
        pause = _PUNCT_PAUSE_S if word[-1] in ".,!?;:" else _WORD_GAP_S
        audio = np.concatenate([audio, _silence(pause)])
        delta = word if index == len(words) - 1 else word + " "
        yield SpeechChunk(text=delta, pcm=_to_pcm16(audio, peak))


def synthesize(text: str, *, peak: float = 0.35) -> bytes:
    """The whole utterance as PCM16 bytes."""
    return b"".join(chunk.pcm for chunk in speech_chunks(text, peak=peak))


def split_pcm(pcm: bytes, max_ms: int) -> Iterator[bytes]:
    """Cut PCM16 into pieces of at most ``max_ms`` (the Realtime API sends small deltas)."""
    step = SAMPLE_RATE * BYTES_PER_SAMPLE * max_ms // 1000
    step -= step % BYTES_PER_SAMPLE
    for start in range(0, len(pcm), step):
        yield pcm[start : start + step]


def rms_dbfs(pcm: bytes) -> float:
    """Level of PCM16 audio in dBFS (-inf for digital silence)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(samples**2))) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf
