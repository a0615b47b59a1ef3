"""token_api.loop_metrics exports what prometheus_client's Counter and Histogram export for
the same updates, in both exposition formats, with and without the _created series."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as client_metrics
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from token_api.loop_metrics import LoopCounter, LoopGauge, LoopHistogram
from token_api.metrics import PUBLISH_BUCKETS

_CREATED = re.compile(r"(_created(?:\{[^}]*\})?) [0-9.e+]+")


def _exposed(registry: CollectorRegistry) -> tuple[str, str]:
    # creation times are the clock's: compared by presence, not value
    text = _CREATED.sub(r"\1 T", generate_latest(registry).decode())
    openmetrics = _CREATED.sub(r"\1 T", generate_openmetrics(registry).decode())
    return text, openmetrics


def _drive(counter: Any, plain: Any, histogram: Any, gauge: Any, durations: Any) -> None:
    for agent in ("travel-assistant", "concierge", "travel-assistant"):
        counter.labels(agent).inc()
    plain.inc()
    plain.inc(2.5)
    for seconds in (0.0001, 0.0005, 0.0007, 0.001, 0.0031, 0.25, 2.5, 3.0, 0.0):
        histogram.observe(seconds)
    route = ("POST", "/v1/sessions", 200, "token_api")
    gauge.labels(*route).inc()
    gauge.labels(*route).inc()
    gauge.labels(*route).dec()
    gauge.labels("GET", "/v1/agents", 200, "token_api").inc()
    for status, seconds in ((201, 0.004), (201, 0.2), (422, 0.001), (503, 12.0)):
        durations.labels("POST", "/v1/sessions", status, "token_api").observe(seconds)


@pytest.mark.parametrize("created", [True, False])
def test_same_exposition_as_prometheus_client(
    created: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_metrics, "_use_created", created)
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    labels = ["method", "path", "status_code", "app_name"]
    _drive(
        Counter("t_sessions_created_total", "Sessions", ["agent_name"], registry=theirs),
        Counter("t_tokens_minted_total", "Tokens", registry=theirs),
        Histogram("t_publish_latency_seconds", "Publish", buckets=PUBLISH_BUCKETS, registry=theirs),
        Gauge("t_requests_in_progress", "In progress", labels, registry=theirs),
        Histogram("t_request_duration_seconds", "Duration", labels, registry=theirs),
    )
    _drive(
        LoopCounter("t_sessions_created_total", "Sessions", ["agent_name"], registry=ours),
        LoopCounter("t_tokens_minted_total", "Tokens", registry=ours),
        LoopHistogram("t_publish_latency_seconds", "Publish", PUBLISH_BUCKETS, registry=ours),
        LoopGauge("t_requests_in_progress", "In progress", labels, registry=ours),
        LoopHistogram("t_request_duration_seconds", "Duration", labelnames=labels, registry=ours),
    )
    assert _exposed(ours) == _exposed(theirs)
    created_samples = re.findall(r"^t_\w+_created(?:\{[^}]*\})? T$", _exposed(ours)[0], re.M)
    assert bool(created_samples) is created


def test_misuse_is_refused_as_prometheus_client_refuses_it() -> None:
    registry = CollectorRegistry()
    labelled = LoopCounter("m_total", "labelled", ["kind"], registry=registry)
    with pytest.raises(ValueError):
        labelled.inc()
    with pytest.raises(ValueError):
        labelled.labels("a", "b")
    with pytest.raises(ValueError):
        labelled.labels("a").inc(-1)
    with pytest.raises(ValueError):
        LoopCounter("m_total", "the same name twice", registry=registry)
