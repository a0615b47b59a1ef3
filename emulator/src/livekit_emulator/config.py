"""Emulator settings (the CLI flags and the ``running_emulator`` keyword arguments)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_API_KEY = "devkey"
# A development-only secret, long enough (>= 32 bytes) for HS256 without warnings.
DEFAULT_API_SECRET = "devsecret-livekit-emulator-not-for-production"

# What the real server announces (golden traces: livekit-server 1.13.5).
SERVER_VERSION = "1.13.5"
SERVER_PROTOCOL = 17
AGENT_PROTOCOL = 1


@dataclass
class SimulatedWorkerSpec:
    agent_name: str
    capacity: int = 10
    join_delay_s: float | None = None
    publish_delay_s: float | None = None
    accept: bool = True
    publish_audio: bool = True
    join: bool = True

    @classmethod
    def parse(cls, text: str) -> SimulatedWorkerSpec:
        """``NAME:CAPACITY`` (capacity defaults to 10 when omitted)."""
        name, _, capacity = text.rpartition(":") if ":" in text else (text, "", "")
        if not capacity:
            return cls(agent_name=text)
        return cls(agent_name=name, capacity=int(capacity))


@dataclass
class EmulatorConfig:
    keys: dict[str, str] = field(default_factory=lambda: {DEFAULT_API_KEY: DEFAULT_API_SECRET})
    webhook_urls: list[str] = field(default_factory=list)
    # Key that signs webhooks; the first configured key when not set.
    webhook_api_key: str | None = None
    simulated_workers: list[SimulatedWorkerSpec] = field(default_factory=list)
    real_timing: bool = False
    # Room defaults (seconds), as livekit-server's room.departure_timeout / room.empty_timeout.
    departure_timeout: float = 20.0
    empty_timeout: float = 300.0
    # How long a worker has to answer an AvailabilityRequest.
    availability_timeout: float = 10.0
    # JobAssignment.url; the real server leaves it empty and the worker keeps its own URL.
    assignment_url: str = ""
    # WebSocket ping interval for /agent (the real server pings every 10 s).
    ping_interval: float = 10.0
    webhook_retries: int = 3
    webhook_backoff_s: float = 0.2
    webhook_timeout_s: float = 5.0
    # Webhooks are sent by this many senders, each one request at a time; events of one room
    # always go through the same one, in order. livekit-server's URLNotifier: 10 workers
    # (webhook num_workers), sharded by FNV-1a of the room name.
    webhook_senders: int = 10
    # Events waiting behind one sender; past it an event is dropped and the next one sent
    # carries ``numDropped`` (livekit's URLNotifier: queue_size 100, DropWhenFull).
    webhook_queue_size: int = 100

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("at least one API key is required")
        if self.webhook_queue_size < 1:
            raise ValueError(
                f"webhook_queue_size must be at least 1, not {self.webhook_queue_size}"
            )
        if self.webhook_api_key is not None and self.webhook_api_key not in self.keys:
            raise ValueError(f"webhook_api_key {self.webhook_api_key!r} is not a configured key")
        self.simulated_workers = [
            SimulatedWorkerSpec(*w) if isinstance(w, tuple) else w for w in self.simulated_workers
        ]

    @property
    def signing_key(self) -> tuple[str, str]:
        key = self.webhook_api_key or next(iter(self.keys))
        return key, self.keys[key]
