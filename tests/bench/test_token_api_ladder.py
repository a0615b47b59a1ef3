"""The cost ladder runs every step against real Redis and reports each step's cost as the
difference from the step before."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest
import redis

from agentline.keys import Keys
from bench import token_api_ladder
from bench.token_api import API_KEY, LIVEKIT_KEY, LIVEKIT_SECRET, SESSION_BODY, _cleanup

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def test_every_step_answers_201_and_the_costs_are_differences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(token_api_ladder, "REQUESTS_PER_ROUND", 160)
    monkeypatch.setattr(token_api_ladder, "ROUNDS", 2)
    namespace = f"test-ladder-{uuid.uuid4().hex[:8]}"
    env = {
        "AGENTLINE_ENV": "test",
        "REDIS_URL": REDIS_URL,
        "AGENTLINE_REDIS_NAMESPACE": namespace,
        "LIVEKIT_URL": "http://127.0.0.1:7880",
        "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
        "TOKEN_API_API_KEYS": API_KEY,
        "TOKEN_API_RATE_LIMIT_PER_MINUTE": "100000",
    }
    try:
        figures = token_api_ladder.measure(env, SESSION_BODY, API_KEY)
        # Sessions were really recorded: the warm-up and two rounds of every step.
        recorded = redis.Redis.from_url(REDIS_URL).xlen(Keys(namespace).requests)
        assert recorded == 5 * (16 + 2 * 160)
    finally:
        _cleanup(REDIS_URL, namespace)
    steps = ["minimal", "session_work", "api_key", "request_metrics", "token_api"]
    cpu = figures["cpu_us_per_request"]
    assert list(cpu) == steps and all(value > 0 for value in cpu.values())
    assert figures["step_cost_us"] == {
        step: round(cpu[step] - cpu[previous], 1) for previous, step in itertools.pairwise(steps)
    }
    assert os.environ.get("AGENTLINE_REDIS_NAMESPACE") != namespace, "the environment is restored"
