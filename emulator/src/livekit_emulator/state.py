"""The emulator's whole state, with the indexes the hot paths need."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from livekit.protocol import models

from .model import Job, Room, Worker

HISTORY = 10_000


class State:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.workers: dict[str, Worker] = {}
        # agent_name -> {worker id -> worker}, in registration order.
        self.workers_by_name: dict[str, dict[str, Worker]] = {}
        # Jobs of open rooms; jobs of closed rooms move to ``finished_jobs``.
        self.jobs: dict[str, Job] = {}
        self.finished_jobs: OrderedDict[str, Job] = OrderedDict()
        # Job requests that no worker took, with the reason (newest last).
        self.dropped_jobs: deque[Job] = deque(maxlen=HISTORY)
        # Room name -> the most agent participants it ever had at once (all its incarnations).
        self.max_agents_seen: dict[str, int] = {}
        # Agent names whose workers' availability answers are ignored (fault).
        self.ignore_availability: set[str] = set()
        # Webhook events in emission order: {"event", "room", "participant", "track", ...}.
        self.events: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    def add_worker(self, worker: Worker) -> None:
        self.workers[worker.id] = worker
        self.workers_by_name.setdefault(worker.agent_name, {})[worker.id] = worker

    def remove_worker(self, worker: Worker) -> None:
        self.workers.pop(worker.id, None)
        by_name = self.workers_by_name.get(worker.agent_name)
        if by_name is not None:
            by_name.pop(worker.id, None)
            if not by_name:
                del self.workers_by_name[worker.agent_name]

    def workers_for(self, agent_name: str) -> list[Worker]:
        return list(self.workers_by_name.get(agent_name, {}).values())

    def agents_in_room(self, room: str) -> list[str]:
        r = self.rooms.get(room)
        return [p.identity for p in r.agents()] if r else []

    def find_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) or self.finished_jobs.get(job_id)

    def finish_job(self, job: Job) -> None:
        """Keep a job of a closed room in the (bounded) history."""
        self.jobs.pop(job.id, None)
        self.finished_jobs[job.id] = job
        if len(self.finished_jobs) > HISTORY:
            self.finished_jobs.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready data (the admin API's ``GET /emulator/state``)."""
        rooms = []
        for room in self.rooms.values():
            rooms.append(
                {
                    "name": room.name,
                    "sid": room.sid,
                    "metadata": room.metadata,
                    "empty_timeout": room.empty_timeout,
                    "departure_timeout": room.departure_timeout,
                    "participants": [
                        {
                            "sid": p.sid,
                            "identity": p.identity,
                            "name": p.name,
                            "kind": "AGENT" if p.is_agent else "STANDARD",
                            "attributes": dict(p.attributes),
                            "job_id": p.job_id,
                            "tracks": [
                                {
                                    "sid": t.sid,
                                    "name": t.name,
                                    "source": models.TrackSource.Name(t.source),
                                }
                                for t in p.tracks.values()
                            ],
                        }
                        for p in room.participants.values()
                    ],
                    "dispatches": [
                        {
                            "id": d.id,
                            "agent_name": d.agent_name,
                            "metadata": d.metadata,
                            "jobs": [j.id for j in d.jobs],
                        }
                        for d in room.dispatches.values()
                    ],
                    "agents": [p.identity for p in room.agents()],
                }
            )
        return {
            "rooms": rooms,
            "workers": [w.summary() for w in self.workers.values()],
            "jobs": [j.summary() for j in self.jobs.values()],
            "finished_jobs": [j.summary() for j in self.finished_jobs.values()],
            "dropped_jobs": [j.summary() for j in self.dropped_jobs],
            "agents_per_room": {r.name: len(r.agents()) for r in self.rooms.values()},
            "max_agents_seen": dict(self.max_agents_seen),
            "ignore_availability": sorted(self.ignore_availability),
        }
