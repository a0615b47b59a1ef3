"""SDP helpers: which cid each media section carries, msid rewriting, trickled candidates."""

from __future__ import annotations

import pytest

from livekit_emulator.rtc.sdp import (
    BadCandidate,
    media_sections,
    parse_candidate_init,
    rewrite_msid,
)

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=recvonly",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:1",
        "a=sendonly",
        "a=msid:stream-1 cid-abc",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:2",
        "",
    ]
)


def test_media_sections_read_mid_direction_and_msid() -> None:
    sections = media_sections(OFFER)
    assert [(s.mid, s.kind, s.direction, s.track_id) for s in sections] == [
        ("0", "audio", "recvonly", ""),
        ("1", "audio", "sendonly", "cid-abc"),
        ("2", "application", "sendrecv", ""),
    ]
    assert sections[1].stream_id == "stream-1"


def test_rewrite_msid_replaces_only_the_listed_sections() -> None:
    out = rewrite_msid(OFFER, {"1": ("PA_x|TR_y", "TR_y"), "0": ("PA_x|TR_z", "TR_z")})
    assert out.endswith("\r\n") and out.count("\r\n") == OFFER.count("\r\n") + 1
    sections = media_sections(out)
    assert (sections[0].stream_id, sections[0].track_id) == ("PA_x|TR_z", "TR_z")
    assert (sections[1].stream_id, sections[1].track_id) == ("PA_x|TR_y", "TR_y")
    assert "cid-abc" not in out
    assert rewrite_msid(OFFER, {}) == OFFER


def test_trickled_candidates() -> None:
    candidate = parse_candidate_init(
        '{"candidate": "candidate:3260369808 1 udp 2122260223 10.203.0.1 40780 typ host '
        'generation 0 ufrag LVm1", "sdpMid": "7", "sdpMLineIndex": 0}'
    )
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.protocol, candidate.type) == (
        "10.203.0.1",
        40780,
        "udp",
        "host",
    )
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("7", 0)
    assert parse_candidate_init('{"candidate": "", "sdpMid": "0"}') is None  # end of candidates
    for bad in ("{not json", "[1]", '{"candidate": "candidate:garbage"}'):
        with pytest.raises(BadCandidate):
            parse_candidate_init(bad)
