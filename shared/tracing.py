"""OpenTelemetry traces: the W3C trace context travels in NATS headers.

A sender (PortfolioClient, the gateway) puts `traceparent`/`tracestate` in the headers of
its command; intake opens a span per command from them and its append stores the command
span's context in the event message's headers; every projection that applies the event
opens a span per batch as a child of one event's context, linked to the others (and a short
`applied` span in each other trace, so that every command's trace reaches every batch that
applied it).

Off unless turned on: a service exports over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and otherwise has no tracer at all: every
function here then returns after one test of a module variable, and no header is added.
A process that set up an OpenTelemetry SDK of its own (a tool using PortfolioClient) is
traced with its provider. The SDK reads the usual variables (`OTEL_SERVICE_NAME`,
`OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`, ...); `OTEL_SDK_DISABLED=true` keeps
tracing off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext, TracerProvider

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
SCOPE = "portfolio"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_PROPAGATOR = TraceContextTextMapPropagator()
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()

#: The tracer once decided (`configure`, `use`); None: off.
_tracer: Tracer | None = None
_decided = False
#: A process that never decided follows the global provider (cached per provider).
_global: tuple[object, Tracer | None] = (None, None)


def _real(provider: object) -> bool:
    """Whether a provider records anything (the API's defaults do not)."""
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def tracer() -> Tracer | None:
    """The tracer to use, or None when tracing is off."""
    global _global
    if _decided:
        return _tracer
    provider = trace.get_tracer_provider()
    if _global[0] is not provider:
        _global = (provider, provider.get_tracer(SCOPE) if _real(provider) else None)
    return _global[1]


def configure(service: str) -> bool:
    """Decide once per process, at a service's start, whether it traces: with OTLP/HTTP when
    an endpoint is configured, with a provider the process set up itself, else not at all.
    Returns whether tracing is on."""
    global _tracer, _decided
    if _decided:
        return _tracer is not None
    _decided = True
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        # Imported only here: a process that does not trace never loads the SDK.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        named = {SERVICE_NAME: f"portfolio-{service}"}
        if os.environ.get("OTEL_SERVICE_NAME"):
            named = {}  # the SDK takes the variable's
        provider = SdkTracerProvider(resource=Resource.create(named))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _tracer = provider.get_tracer(SCOPE)
        return True
    found = trace.get_tracer_provider()
    _tracer = found.get_tracer(SCOPE) if _real(found) else None
    return _tracer is not None


def use(provider: TracerProvider | None) -> None:
    """Trace with this provider from now on (None: off), whatever the environment says: for
    tests (the SDK's in-memory exporter) and for programs that embed a service."""
    global _tracer, _decided
    _decided = True
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None


def enabled() -> bool:
    return tracer() is not None


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's `traceparent` (and `tracestate`) to message headers, in place;
    nothing when tracing is off or no span is current."""
    if tracer() is not None and trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(headers)
    return headers


def headers() -> dict[str, str] | None:
    """Headers for a new message carrying the current trace context, or None (off)."""
    if tracer() is None:
        return None
    found = inject({})
    return found or None


def context_of(carrier: Mapping[str, str] | None) -> Context | None:
    """The trace context a message's headers carry, or None."""
    if not carrier or TRACEPARENT not in carrier:
        return None
    return _PROPAGATOR.extract(carrier)


@contextlib.contextmanager
def _span(
    use_tracer: Tracer,
    name: str,
    parent: Context | None,
    kind: SpanKind,
    attributes: Mapping[str, Any] | None,
) -> Iterator[Span]:
    with use_tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as span:
        yield span


def span(
    name: str,
    carrier: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span made current for the block: a child of the context in `carrier` (a message's
    headers) when it has one, else of the current span. When tracing is off, a shared
    no-op context that yields None."""
    use_tracer = tracer()
    if use_tracer is None:
        return _OFF
    return _span(use_tracer, name, context_of(carrier), kind, attributes)


def set_attributes(current: Span | None, attributes: Mapping[str, Any]) -> None:
    """On the span a `span(...)` block yielded; nothing when tracing is off (None)."""
    if current is not None:
        current.set_attributes(attributes)


def batch(
    name: str,
    msgs: Sequence[Msg],
    started_ns: int,
    ended_ns: int,
    attributes: Mapping[str, Any],
    error: BaseException | None = None,
) -> None:
    """Record a projection's batch after the fact: one span, a child of the first traced
    event's context and linked to the other traces' events; in each of those other traces a
    short `applied` span, linked back to the batch span. No traced event: a root span."""
    use_tracer = tracer()
    if use_tracer is None:
        return
    first_by_trace: dict[int, SpanContext] = {}
    for msg in msgs:
        parent = context_of(msg.headers)
        if parent is None:
            continue
        found = trace.get_current_span(parent).get_span_context()
        if found.is_valid and found.trace_id not in first_by_trace:
            first_by_trace[found.trace_id] = found
    traced = list(first_by_trace.values())
    parent_context = _within(traced[0]) if traced else None
    main = use_tracer.start_span(
        name,
        context=parent_context,
        kind=SpanKind.CONSUMER,
        attributes={**attributes, "portfolio.batch.traces": len(traced)},
        links=[Link(other) for other in traced[1:]],
        start_time=started_ns,
    )
    _finish(main, ended_ns, error)
    back = [Link(main.get_span_context())]
    for other in traced[1:]:
        applied = use_tracer.start_span(
            f"{name} applied",
            context=_within(other),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=back,
            start_time=started_ns,
        )
        _finish(applied, ended_ns, error)


def _within(remote: SpanContext) -> Context:
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


def _finish(done: Span, ended_ns: int, error: BaseException | None) -> None:
    if error is not None:
        done.record_exception(error)
        done.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
    done.end(end_time=ended_ns)
