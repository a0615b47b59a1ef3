"""Counters, gauges and histograms held as plain numbers, exported in prometheus_client's
exposition.

A ``prometheus_client`` Counter increment goes through the observability check of the metric,
the value wrapper and a ``threading.Lock``; a Histogram observation does that for its count,
its sum and one bucket. The four updates token-api makes per session cost ~31,000 CPU
instructions, 4 % of the session path. These metrics are only ever updated from the
event-loop thread, so they need no lock: a series here is a number added to in place, and a
collector registered with prometheus_client turns the numbers into the samples
prometheus_client's own Counter and Histogram produce (same names, HELP, TYPE, label order,
``le`` values, ``_created`` unless created series are disabled). The tests compare the two
expositions. A scrape from another thread reads numbers the loop may be adding to: it sees
each one before or after an update, as prometheus_client's lock would let it.
"""

from __future__ import annotations

import bisect
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client import metrics as client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString


def _created_series_exported() -> bool:
    # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES, disable_created_metrics())
    return bool(getattr(client_metrics, "_use_created", True))


class CounterSeries:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class GaugeSeries:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class HistogramSeries:
    """Observations counted in the first bucket that holds them (upper bounds inclusive, as
    Prometheus's ``le``)."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, amount)] += 1.0
        self.sum += amount


S = TypeVar("S", CounterSeries, GaugeSeries, HistogramSeries)


class _Family(ABC, Generic[S]):
    """Series by label values, as prometheus_client's ``labels(...)`` gives them; a subclass
    says what a series is and how the family is exposed."""

    kind = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    @abstractmethod
    def _new_series(self) -> S: ...

    def labels(self, *values: object) -> S:
        return self._series_of(values)

    def _series_of(self, values: tuple[object, ...]) -> S:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {values!r}")
        key = tuple(str(value) for value in values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._new_series()
        return series

    def _unlabelled(self) -> S:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels: use .labels(...)")
        return self._series_of(())

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    @abstractmethod
    def collect(self) -> Iterator[Metric]: ...

    def _labelled(self) -> Iterator[tuple[dict[str, str], S]]:
        for key, series in list(self._series.items()):
            yield dict(zip(self.labelnames, key, strict=True)), series


class LoopCounter(_Family[CounterSeries]):
    """A counter family; ``labels(...)`` gives its series (unlabelled: ``inc`` directly)."""

    kind = "counter"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)
        # exported from the start, as prometheus_client's; kept at hand for the hot inc()
        self._alone: CounterSeries | None = None if self.labelnames else self._series_of(())

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1.0) -> None:
        (self._alone or self._unlabelled()).inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.documentation, "counter")
        created = _created_series_exported()
        for labels, series in self._labelled():
            family.add_sample(self.name + "_total", labels, series.value)
            if created:
                family.add_sample(self.name + "_created", labels, series.created)
        yield family


class LoopGauge(_Family[GaugeSeries]):
    kind = "gauge"

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._unlabelled().dec(amount)

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.documentation, "gauge")
        for labels, series in self._labelled():
            family.add_sample(self.name, labels, series.value)
        yield family


class LoopHistogram(_Family[HistogramSeries]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float | str] = Histogram.DEFAULT_BUCKETS,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        bounds = sorted(float(bound) for bound in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(bound) for bound in bounds)
        super().__init__(name, documentation, labelnames, registry)
        if not self.labelnames:
            self._series_of(())  # exported from the start, as prometheus_client's

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self._bounds)

    def observe(self, amount: float) -> None:
        self._unlabelled().observe(amount)

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.documentation, "histogram")
        created = _created_series_exported()
        for labels, series in self._labelled():
            counts, total = list(series.counts), series.sum
            cumulative = 0.0
            for le, count in zip(self._le, counts, strict=True):
                cumulative += count
                family.add_sample(self.name + "_bucket", {**labels, "le": le}, cumulative)
            family.add_sample(self.name + "_count", labels, cumulative)
            if self._bounds[0] >= 0:
                family.add_sample(self.name + "_sum", labels, total)
            if created:
                family.add_sample(self.name + "_created", labels, series.created)
        yield family
