"""The token-api benchmark's turns: figures combined over rounds, ratios within a round."""

from __future__ import annotations

from typing import Any

import pytest

from bench.http_load import _combined
from bench.token_api import round_ratio


def _run(ok_per_s: float, p99_ms: float, requests: int, cpu: float | None) -> dict[str, Any]:
    return {
        "load_average_before": 0.5,
        "requests": requests,
        "ok_per_s": ok_per_s,
        "non_2xx": 0,
        "socket_errors": 0,
        "p50_ms": p99_ms / 4,
        "p90_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "max_ms": p99_ms * 2,
        "cpu_seconds": cpu,
    }


def test_rounds_combine_into_rate_median_tail_worst_tail_and_cpu_per_request() -> None:
    combined = _combined(
        [_run(1000, 4.0, 2000, 0.2), _run(3000, 9.0, 6000, 0.6), _run(2000, 5.0, 4000, 0.4)]
    )
    assert combined["ok_per_s"] == 2000
    assert combined["requests"] == 12000
    assert combined["p99_ms"] == 5.0
    assert combined["p99_ms_worst_round"] == 9.0
    assert combined["max_ms"] == 18.0
    assert combined["server_cpu_us_per_request"] == pytest.approx(100.0)
    assert combined["per_round_ok_per_s"] == [1000, 3000, 2000]


def test_cpu_is_left_out_where_it_could_not_be_read() -> None:
    assert "server_cpu_us_per_request" not in _combined([_run(1000, 4.0, 2000, None)])


def test_the_ratio_is_the_median_of_ratios_within_rounds() -> None:
    # Both servers slow down in round 2 (the host drifted): within-round ratios stay 3, 4, 5.
    runs = {
        "token_api": {"16": {"per_round_ok_per_s": [3000.0, 1600.0, 5000.0]}},
        "seed": {"16": {"per_round_ok_per_s": [1000.0, 400.0, 1000.0]}},
    }
    assert round_ratio(runs, "token_api", "seed") == 4.0
    assert round_ratio(runs, "token_api", "bare") == 0.0
