"""WebRTC in the emulator: ``/rtc`` signalling with aiortc peer connections, so that the real
LiveKit SDKs can join rooms, publish audio and receive each other's (relayed) tracks."""

from .hub import RtcHub
from .routes import HUB_KEY, add_routes

__all__ = ["HUB_KEY", "RtcHub", "add_routes"]
