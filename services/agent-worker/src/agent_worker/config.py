"""What a job process needs to know, resolved once in the worker's main process.

The main process reads :class:`agentline.settings.AgentWorkerSettings` (and starts the
Realtime stand-in when no OpenAI key is set); job processes are forked from a forkserver
that inherits the environment, so the resolved configuration travels as one JSON variable.
"""

from __future__ import annotations

import functools
import os

import msgspec

JOB_CONFIG_ENV = "AGENT_WORKER_JOB_CONFIG"


class JobConfig(msgspec.Struct, frozen=True):
    agent_name: str
    agent_identity: str
    agent_display_name: str
    worker_id: str
    telemetry_socket: str
    openai_api_key: str
    openai_base_url: str | None
    using_standin: bool
    voice: str = "alloy"
    temperature: float = 0.8
    model: str = "gpt-realtime"
    join_timeout_s: float = 20.0
    # how long a failed join waits for the model's verdict, so a bad key is named as such
    model_verdict_timeout_s: float = 10.0
    model_max_retry: int = 2
    # a job whose caller never shows up ends instead of holding a slot forever
    caller_wait_s: float = 120.0

    def to_env(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_env(cls, raw: str) -> JobConfig:
        return msgspec.json.decode(raw, type=cls)


def publish_job_config(config: JobConfig) -> None:
    """Make ``config`` visible to job processes (call before the worker starts its pool)."""
    os.environ[JOB_CONFIG_ENV] = config.to_env()
    job_config.cache_clear()


@functools.cache
def job_config() -> JobConfig:
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{JOB_CONFIG_ENV} is not set: job processes run under agent-worker")
    return JobConfig.from_env(raw)
