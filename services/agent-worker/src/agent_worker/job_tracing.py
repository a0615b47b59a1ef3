"""The job's span, continuing the dispatch's trace (carried in the job metadata).

Job processes get their own tracer provider, and only when OTLP export is configured: the
global provider stays unset there, so livekit-agents' own spans (which carry conversation
content) are never exported by accident.
"""

from __future__ import annotations

import asyncio
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agentline.telemetry import extract_context


class JobSpan:
    def __init__(self, tracer: trace.Tracer | None, provider: TracerProvider | None) -> None:
        self._tracer = tracer
        self._provider = provider
        self.span: trace.Span = trace.INVALID_SPAN

    @classmethod
    def from_environment(cls) -> JobSpan:
        if not (
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            return cls(None, None)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(resource=Resource.create({"service.name": "agent-worker"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider.get_tracer("agent_worker.job"), provider)

    def start(self, carrier: dict[str, str], attributes: dict[str, str]) -> None:
        if self._tracer is not None:
            self.span = self._tracer.start_span(
                "agent_worker.job", context=extract_context(carrier), attributes=attributes
            )

    def event(self, name: str, **attributes: str | float) -> None:
        self.span.add_event(name, attributes=attributes)

    async def end(self, outcome: str, detail: str) -> None:
        self.span.set_attribute("agentline.outcome", outcome)
        if outcome == "failed":
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, detail))
        else:
            self.span.set_attribute("agentline.end_reason", detail)
        self.span.end()
        if self._provider is not None:
            # a job process is short-lived: export before it exits
            await asyncio.to_thread(self._provider.shutdown)
