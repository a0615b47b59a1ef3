"""OpenTelemetry: one trace per dispatch, carried through the stream entry and the LiveKit
dispatch metadata. Spans are exported over OTLP only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set; otherwise they are created (ids for logs) and dropped."""

from __future__ import annotations

import os

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def setup_tracing(service_name: str) -> TracerProvider:
    """Install the tracer provider once per process."""
    global _configured
    provider = trace.get_tracer_provider()
    if _configured and isinstance(provider, TracerProvider):
        return provider
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_context(ctx: otel_context.Context | None = None) -> dict[str, str]:
    """The W3C trace context (``traceparent``, ``tracestate``) of ``ctx`` or the current one."""
    carrier: dict[str, str] = {}
    inject(carrier, context=ctx)
    return carrier


def extract_context(carrier: dict[str, str] | None) -> otel_context.Context:
    return extract(carrier or {})


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def trace_id_of(carrier: dict[str, str] | None) -> str:
    """The trace id in a carried ``traceparent`` (version-traceid-spanid-flags)."""
    parent = (carrier or {}).get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else ""
