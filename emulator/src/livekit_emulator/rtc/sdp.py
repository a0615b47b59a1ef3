"""The bits of SDP and ICE candidate text the signalling needs: which track id (the client's
``cid``) each media section carries, rewriting the ``msid`` of the sections the emulator offers,
and trickled candidates."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp


@dataclass(frozen=True)
class MediaSection:
    mid: str
    kind: str
    direction: str
    stream_id: str
    track_id: str


def media_sections(sdp: str) -> list[MediaSection]:
    """Each ``m=`` section's mid, kind, direction and msid (stream id and track id)."""
    sections: list[MediaSection] = []
    current: dict[str, str] | None = None

    def flush() -> None:
        if current is not None:
            sections.append(
                MediaSection(
                    mid=current.get("mid", ""),
                    kind=current["kind"],
                    direction=current.get("direction", "sendrecv"),
                    stream_id=current.get("stream_id", ""),
                    track_id=current.get("track_id", ""),
                )
            )

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            flush()
            current = {"kind": line[2:].split(" ", 1)[0]}
        elif current is None:
            continue
        elif line.startswith("a=mid:"):
            current["mid"] = line[len("a=mid:") :]
        elif line.startswith("a=msid:"):
            parts = line[len("a=msid:") :].split()
            current["stream_id"] = parts[0] if parts else ""
            current["track_id"] = parts[1] if len(parts) > 1 else ""
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            current["direction"] = line[2:]
    flush()
    return sections


def rewrite_msid(sdp: str, msid_by_mid: dict[str, tuple[str, str]]) -> str:
    """``sdp`` with the ``a=msid`` line of each listed mid replaced by (stream id, track id):
    the SDK reads ``PA_<participant>|TR_<track>`` from the stream id to know whose track it
    receives."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailing = lines and lines[-1] == ""
    if trailing:
        lines.pop()
    header: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            header.append(line)
    out = list(header)
    for section in sections:
        mid = next((ln[len("a=mid:") :] for ln in section if ln.startswith("a=mid:")), None)
        wanted = msid_by_mid.get(mid) if mid is not None else None
        if wanted is not None:
            msid = f"a=msid:{wanted[0]} {wanted[1]}"
            kept = [ln for ln in section if not ln.startswith("a=msid:")]
            # msid goes after the mid line; aiortc writes one for every sending section.
            at = next(i for i, ln in enumerate(kept) if ln.startswith("a=mid:")) + 1
            section = [*kept[:at], msid, *kept[at:]]
        out.extend(section)
    return eol.join(out) + (eol if trailing else "")


class BadCandidate(ValueError):
    pass


def parse_candidate_init(candidate_init: str) -> RTCIceCandidate | None:
    """The candidate a ``TrickleRequest.candidateInit`` JSON carries; ``None`` for the
    end-of-candidates marker (an empty candidate)."""
    try:
        data = json.loads(candidate_init)
    except json.JSONDecodeError as exc:
        raise BadCandidate(f"candidateInit is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadCandidate("candidateInit is not a JSON object")
    text = str(data.get("candidate") or "").strip()
    if not text:
        return None
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(text)
    except Exception as exc:  # aiortc's parser raises ValueError, IndexError, AssertionError
        raise BadCandidate(f"unparsable candidate {text!r}: {exc}") from exc
    mid = data.get("sdpMid")
    index = data.get("sdpMLineIndex")
    candidate.sdpMid = str(mid) if mid is not None else None
    candidate.sdpMLineIndex = int(index) if index is not None else None
    return candidate
