"""Helpers shared by the benchmarks: percentiles, result files, Redis selection."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of durations given in seconds, in milliseconds."""
    return {
        "count": len(values_s),
        "p50_ms": round(percentile(values_s, 50) * 1000, 3),
        "p90_ms": round(percentile(values_s, 90) * 1000, 3),
        "p99_ms": round(percentile(values_s, 99) * 1000, 3),
        "max_ms": round(max(values_s) * 1000, 3) if values_s else float("nan"),
    }


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine it ran on, and print it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"\n== {name} ==")
    print(json.dumps(figures, indent=2))
    return path


def target(value: float, bound: float, higher_is_better: bool = False) -> dict[str, Any]:
    """A figure beside its target, and whether it met it (never hidden)."""
    met = value >= bound if higher_is_better else value <= bound
    return {
        "value": value,
        "target": (">= " if higher_is_better else "<= ") + str(bound),
        "met": met,
    }
