"""Data packets (``publish_data``, RPC, text and byte streams, transcriptions) between
participants.

Clients send ``DataPacket`` protobufs on the ``_reliable`` / ``_lossy`` data channels of their
publisher connection; the server forwards each one, stamped with the sender's identity and
sid, on the channel of the same name it opened on each recipient's subscriber connection
(the recipients are ``destination_identities`` when given, else everyone else in the room).
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from google.protobuf.message import DecodeError
from livekit.protocol import models

log = logging.getLogger("livekit_emulator.rtc.data")

RELIABLE = "_reliable"
LOSSY = "_lossy"
# Reliable packets sent before the recipient's channel opens wait, up to this many.
MAX_PENDING = 256


class OutgoingChannels:
    """The server's two data channels on a subscriber connection."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._channels = {
            RELIABLE: pc.createDataChannel(RELIABLE, ordered=True),
            LOSSY: pc.createDataChannel(LOSSY, ordered=False, maxRetransmits=0),
        }
        self._pending: list[bytes] = []
        self._channels[RELIABLE].on("open", self._flush)
        self.sent = 0
        self.dropped = 0

    def send(self, label: str, data: bytes) -> None:
        channel = self._channels[LOSSY if label == LOSSY else RELIABLE]
        if channel.readyState == "open":
            channel.send(data)
            self.sent += 1
        elif channel is self._channels[RELIABLE] and len(self._pending) < MAX_PENDING:
            self._pending.append(data)
        else:
            self.dropped += 1

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for data in pending:
            self.send(RELIABLE, data)


def stamp(raw: bytes, identity: str, sid: str) -> tuple[bytes, list[str]] | None:
    """The packet as recipients get it (sender stamped, as the server does) and its explicit
    destinations; ``None`` for an undecodable packet."""
    packet = models.DataPacket()
    try:
        packet.ParseFromString(raw)
    except DecodeError:
        return None
    packet.participant_identity = identity
    packet.participant_sid = sid
    destinations = list(packet.destination_identities)
    if packet.WhichOneof("value") == "user":
        packet.user.participant_identity = identity
        packet.user.participant_sid = sid
        destinations += list(packet.user.destination_identities)
    return packet.SerializeToString(), destinations
