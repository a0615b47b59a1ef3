"""Every Redis key and stream name agentline uses, in one place.

All keys share one hash tag (``{namespace}``) so that the multi-key Lua scripts also run on
Redis Cluster: one slot holds a deployment's keys. Tests give each case its own namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

DISPATCHER_GROUP = "dispatchers"


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "agentline"

    @property
    def prefix(self) -> str:
        return "{" + self.namespace + "}"

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for every key of this namespace (glob characters escaped)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return escaped + "*"

    # Streams
    @property
    def requests(self) -> str:
        """Dispatch requests written by token-api, read by the dispatcher group."""
        return f"{self.prefix}:dispatch-requests"

    @property
    def dead_letters(self) -> str:
        """Requests that failed too many deliveries, with the reason."""
        return f"{self.prefix}:dispatch-requests:dead"

    @property
    def worker_events(self) -> str:
        """Job events our agent workers report (request, accept, join, audio, end)."""
        return f"{self.prefix}:worker-events"

    @property
    def control(self) -> str:
        """Commands for the dispatchers that are not new requests (cancel)."""
        return f"{self.prefix}:control"

    # Dispatches
    def dispatch(self, dispatch_id: str) -> str:
        """Hash: the dispatch record."""
        return f"{self.prefix}:dispatch:{dispatch_id}"

    def dispatch_lease(self, dispatch_id: str) -> str:
        """String with TTL: the dispatcher replica (and holding) that owns a dispatch now."""
        return f"{self.prefix}:dispatch:{dispatch_id}:lease"

    def dispatch_events(self, dispatch_id: str) -> str:
        """Stream: the dispatch's own transitions (what SSE serves)."""
        return f"{self.prefix}:dispatch:{dispatch_id}:events"

    def idempotency(self, scope: str, key: str) -> str:
        """String: the first answer given for an Idempotency-Key."""
        return f"{self.prefix}:idem:{scope}:{key}"

    def room_dispatch(self, room: str) -> str:
        """String: the dispatch that owns the agent of a room (one agent per room)."""
        return f"{self.prefix}:room:{room}:dispatch"

    @property
    def deadlines(self) -> str:
        """Sorted set: dispatch id → the time its current stage times out."""
        return f"{self.prefix}:deadlines"

    # Workers
    @property
    def workers(self) -> str:
        """Sorted set: worker id → expiry of its last heartbeat (ms)."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """Hash: one worker's registry entry (expires without heartbeats)."""
        return f"{self.prefix}:worker:{worker_id}"

    def service_instances(self, service: str) -> str:
        """Sorted set: live instances of a service (e.g. dispatcher pods) → heartbeat expiry."""
        return f"{self.prefix}:instances:{service}"

    # Admission (capacity-aware)
    def waiting_queue(self, agent_name: str) -> str:
        """List: dispatch ids waiting for a slot of this agent_name, FIFO."""
        return f"{self.prefix}:queue:{agent_name}"

    def slots_used(self, agent_name: str) -> str:
        """Sorted set: dispatch id → reservation expiry (ms) for this agent_name (slots used)."""
        return f"{self.prefix}:slots:{agent_name}"

    def agent_capacity(self, agent_name: str) -> str:
        """Hash: worker id → "capacity:expiry_ms:draining", kept by worker heartbeats."""
        return f"{self.prefix}:capacity:{agent_name}"

    def job_durations(self, agent_name: str) -> str:
        """List: recent job durations (ms) of this agent_name, for wait estimates."""
        return f"{self.prefix}:durations:{agent_name}"

    @property
    def capacity_changed(self) -> str:
        """Pub/sub channel: an agent_name whose capacity rose or changed (a worker joined,
        raised its capacity or stopped draining): dispatchers admit queue heads at once."""
        return f"{self.prefix}:capacity-changed"

    @property
    def admission_agents(self) -> str:
        """Set: agent names that have had workers or waiting dispatches (queue pump, metrics)."""
        return f"{self.prefix}:admission:agents"

    # API
    def rate_limit(self, subject: str, window: int) -> str:
        return f"{self.prefix}:ratelimit:{subject}:{window}"

    # Webhooks seen by the dispatcher (for the doctor)
    @property
    def webhook_stats(self) -> str:
        return f"{self.prefix}:webhooks"
