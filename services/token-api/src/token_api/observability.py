"""Request metrics through Litestar's Prometheus plugin, with a leaner per-request path.

``LeanPrometheusMiddleware`` exports exactly what Litestar's middleware exports (same metric
names, labels and values: ``<prefix>_requests_total``, ``_request_duration_seconds``,
``_requests_in_progress``, ``_requests_error_total``, by method, route template, status and
app name). It looks each labelled series up once per (method, route, status) instead of
building a Request, a label dict and four ``.labels()`` calls on every request, which cost
about a tenth of the session path.

The four metrics themselves are ``token_api.loop_metrics`` series (lock-free numbers updated
by the event loop, exported with prometheus_client's exposition) kept where Litestar keeps its
own, ``PrometheusMiddleware._metrics``, under the names, HELP texts, labels and buckets
Litestar gives them: whichever path records a request, the same objects count it. With
exemplars configured, Litestar's prometheus_client metrics are kept (loop series hold none).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Histogram

from token_api.loop_metrics import LoopCounter, LoopGauge, LoopHistogram

Labels = dict[str, str | int | float]


class LeanPrometheusMiddleware(PrometheusMiddleware):
    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        self._in_progress: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, int], tuple[Any, Any, Any | None]] = {}

    def _shared(self, suffix: str, make: Callable[[str], Any]) -> Any:
        metrics: dict[str, Any] = PrometheusMiddleware._metrics
        name = f"{self._config.prefix}_{suffix}"
        metric = metrics.get(name)
        if metric is None:
            metric = metrics[name] = make(name)
        return metric

    def request_count(self, labels: Labels) -> Any:
        if self._config.exemplars:
            return super().request_count(labels)
        return self._shared(
            "requests_total", lambda name: LoopCounter(name, "Total requests", [*labels])
        )

    def request_time(self, labels: Labels) -> Any:
        if self._config.exemplars:
            return super().request_time(labels)
        buckets = self._config.buckets or Histogram.DEFAULT_BUCKETS
        return self._shared(
            "request_duration_seconds",
            lambda name: LoopHistogram(
                name, "Request duration, in seconds", buckets, labelnames=[*labels]
            ),
        )

    def requests_in_progress(self, labels: Labels) -> Any:
        if self._config.exemplars:
            return super().requests_in_progress(labels)
        return self._shared(
            "requests_in_progress",
            lambda name: LoopGauge(name, "Total requests currently in progress", [*labels]),
        )

    def requests_error_count(self, labels: Labels) -> Any:
        if self._config.exemplars:
            return super().requests_error_count(labels)
        return self._shared(
            "requests_error_total",
            lambda name: LoopCounter(name, "Total errors in requests", [*labels]),
        )

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        # The order of Litestar's own labels: the series must be the same ones.
        return {
            "method": method,
            "path": path,
            "status_code": status,
            "app_name": self._config.app_name,
        }

    def _bypassed(self, scope: Scope) -> bool:
        """Litestar's test for skipping a middleware (``should_bypass_middleware``: scope type,
        the route's opt-out key, the exclude pattern), with the same conditions in the same
        order."""
        if scope["type"] not in self.scopes:
            return True
        route_handler: Any = scope.get("route_handler")
        opt_key = self.exclude_opt_key
        if opt_key and route_handler is not None and route_handler.opt.get(opt_key):
            return True
        if self.exclude_pattern is None:
            return False
        is_mount = getattr(route_handler, "is_mount", False)
        path = scope["raw_path"].decode() if is_mount else scope["path"]
        return bool(self.exclude_pattern.findall(path))

    async def _measured_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._bypassed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http" or self._config.labels or self._config.exemplars:
            # Litestar's own path (its wrapper tests the bypass again, and passes)
            await PrometheusMiddleware.__call__(self, scope, receive, send)
            return
        method: str = cast(Any, scope)["method"]
        if self._config.excluded_http_methods and method in self._config.excluded_http_methods:
            await self.app(scope, receive, send)
            return
        path = scope["path_template"] if self._config.group_path else scope["path"]
        gauge = self._in_progress.get((method, path))
        if gauge is None:
            labels = self._labels(method, path, 200)  # Litestar labels this gauge with 200
            gauge = self.requests_in_progress(labels).labels(*labels.values())
            self._in_progress[(method, path)] = gauge
        status = [200]
        started = time.perf_counter()

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        gauge.inc()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            gauge.dec()
            duration = time.perf_counter() - started
            key = (method, path, status[0])
            series = self._finished.get(key)
            if series is None:
                labels = self._labels(*key)
                values = list(labels.values())
                # The error series only for 5xx, as Litestar makes it (no zero series).
                series = (
                    self.request_count(labels).labels(*values),
                    self.request_time(labels).labels(*values),
                    self.requests_error_count(labels).labels(*values) if key[2] >= 500 else None,
                )
                self._finished[key] = series
            count, latency, errors = series
            if errors is not None:
                errors.inc()
            count.inc()
            latency.observe(duration)


# Litestar wraps the ``__call__`` of every AbstractMiddleware subclass in that bypass test,
# made through three generic calls (~2 µs a request): the lean middleware makes it itself.
# Assigned after the class is made, so that the wrapper is not put around it.
LeanPrometheusMiddleware.__call__ = LeanPrometheusMiddleware._measured_call  # type: ignore[method-assign,assignment]
