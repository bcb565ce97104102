"""Metrics and tracing pieces on their own: ports, the endpoint, labels, trace context."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.base import CommandAccepted, CommandRejected, ErrorCode, ErrorInfo
from contracts.subjects import SERVICES
from shared import metrics, tracing
from shared.settings import IntakeSettings, NotifySettings, ServiceSettings

# --- settings ------------------------------------------------------------------------------


def test_metrics_port_per_service() -> None:
    assert ServiceSettings().metrics_port_for("intake") == 0  # a free one by default
    assert ServiceSettings(metrics_port=-1).metrics_port_for("intake") is None
    base = ServiceSettings(metrics_port=9460)
    assert [base.metrics_port_for(name) for name in SERVICES] == list(range(9460, 9466))
    assert IntakeSettings(metrics_port=9460).metrics_port_for("intake") == 9460
    assert NotifySettings(metrics_port=9460).metrics_port_for("notify") == 9465


def test_metrics_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTFOLIO_METRICS_PORT", "9500")
    monkeypatch.setenv("PORTFOLIO_METRICS_HOST", "0.0.0.0")
    settings = ServiceSettings()
    assert settings.metrics_port_for("risk") == 9503
    assert settings.metrics_host == "0.0.0.0"
    for bad in ("-2", "70000", "many"):
        monkeypatch.setenv("PORTFOLIO_METRICS_PORT", bad)
        with pytest.raises(ValueError, match="metrics_port"):
            ServiceSettings()


# --- the endpoint --------------------------------------------------------------------------


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_the_endpoint_serves_the_registry_after_a_refresh() -> None:
    refreshed: list[bool] = []

    async def refresh() -> None:
        refreshed.append(True)
        metrics.LOG_POSITION.labels("unit-test").set(42)

    server = metrics.MetricsServer("127.0.0.1", 0, refresh)
    port = await server.start()
    try:
        assert port > 0 and server.url == f"http://127.0.0.1:{port}/metrics"
        status, content_type, text = await get(server.url)
        assert status == 200 and content_type.startswith("text/plain")
        assert refreshed == [True]
        assert 'portfolio_log_position{service="unit-test"} 42.0' in text
        status, _, _ = await get(f"http://127.0.0.1:{port}/other")
        assert status == 404
    finally:
        await server.stop()


async def test_a_failing_refresh_still_serves_the_counters() -> None:
    async def refresh() -> None:
        raise RuntimeError("the log did not answer")

    server = metrics.MetricsServer("127.0.0.1", 0, refresh)
    await server.start()
    try:
        status, _, text = await get(server.url)
        assert status == 200 and "portfolio_intake_commands_total" in text
    finally:
        await server.stop()


async def test_a_taken_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server = metrics.MetricsServer("127.0.0.1", busy, None)
        port = await server.start()
        try:
            assert port not in (0, busy)
            status, _, _ = await get(server.url)
            assert status == 200
        finally:
            await server.stop()


def test_a_wildcard_address_is_shown_as_the_host_name() -> None:
    server = metrics.MetricsServer("0.0.0.0", 9460)
    assert server.url == f"http://{socket.gethostname()}:9460/metrics"


# --- labels and figures --------------------------------------------------------------------


def test_outcome_labels_are_a_handful_of_words() -> None:
    assert metrics.outcome(CommandAccepted(command_id="c-1", events=())) == "accepted"
    duplicate = CommandAccepted(command_id="c-1", events=(), duplicate=True)
    assert metrics.outcome(duplicate) == "duplicate"
    for code in ErrorCode:
        refused = CommandRejected(command_id=None, error=ErrorInfo(code=code, message="no"))
        assert metrics.outcome(refused) == code.value


def test_figures_are_the_services_own_samples() -> None:
    metrics.APPLIED.labels("unit-figures").inc(3)
    metrics.BATCH_EVENTS.labels("unit-figures").observe(3)
    metrics.APPLIED.labels("unit-other").inc(5)
    found = metrics.figures("unit-figures")
    assert found["portfolio_projection_events_applied_total"] == 3
    assert found["portfolio_projection_batch_events_count"] == 1
    assert found["portfolio_projection_batch_events_sum"] == 3
    assert not [key for key in found if "_bucket" in key or "_created" in key]
    assert "portfolio_intake_commands_total" not in str(found)  # intake's, not this one's
    assert any(key.startswith("portfolio_intake_") for key in metrics.figures("intake"))


# --- tracing -------------------------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)


def test_off_means_no_span_and_no_header() -> None:
    tracing.use(None)
    assert not tracing.enabled()
    with tracing.span("nothing", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) as s:
        assert s is None
        assert tracing.headers() is None
        assert tracing.inject({"Nats-Msg-Id": "x"}) == {"Nats-Msg-Id": "x"}
    tracing.set_attributes(None, {"a": 1})  # harmless


def test_a_span_continues_the_senders_trace(spans: InMemorySpanExporter) -> None:
    sender = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with tracing.span("intake command", {"traceparent": sender}) as current:
        assert current is not None
        headers = tracing.inject({"Nats-Msg-Id": "e-1"})
    (done,) = spans.get_finished_spans()
    assert done.context is not None and done.parent is not None
    assert f"{done.context.trace_id:032x}" == "a" * 32
    assert f"{done.parent.span_id:016x}" == "b" * 16
    assert headers["traceparent"] == f"00-{'a' * 32}-{done.context.span_id:016x}-01"
    assert headers["Nats-Msg-Id"] == "e-1"


@pytest.mark.parametrize(
    "carrier",
    [
        None,
        {},
        {"traceparent": ""},
        {"traceparent": "garbage"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids
        {"traceparent": "ff-" + "a" * 32 + "-" + "b" * 16 + "-01"},  # forbidden version
        {"traceparent": "00-" + "A" * 32 + "-" + "b" * 16 + "-01"},  # upper case
        {"traceparent": "x" * 100_000},
    ],
)
def test_a_missing_or_bad_context_starts_a_trace(
    spans: InMemorySpanExporter, carrier: dict[str, str] | None
) -> None:
    with tracing.span("intake command", carrier):
        pass
    (done,) = spans.get_finished_spans()
    assert done.parent is None


@dataclass
class FakeMsg:
    headers: dict[str, str] | None
    metadata: Any = field(default=None)


def test_a_batch_joins_the_first_trace_and_reaches_every_other(
    spans: InMemorySpanExporter,
) -> None:
    def parent(trace: str, span: str) -> dict[str, str]:
        return {"traceparent": f"00-{trace * 32}-{span * 16}-01"}

    msgs = [
        FakeMsg(parent("a", "1")),
        FakeMsg(None),  # an event appended without a trace
        FakeMsg(parent("b", "2")),
        FakeMsg(parent("a", "3")),  # the same trace again: one span there is enough
        FakeMsg({"traceparent": "broken"}),
    ]
    tracing.batch("projection ledger", msgs, 1_000, 2_000, {"portfolio.batch.events": 5})  # type: ignore[arg-type]
    found = {s.name: s for s in spans.get_finished_spans()}
    assert set(found) == {"projection ledger", "projection ledger applied"}
    main, applied = found["projection ledger"], found["projection ledger applied"]
    assert main.parent is not None and main.context is not None
    assert f"{main.context.trace_id:032x}" == "a" * 32
    assert [f"{link.context.trace_id:032x}" for link in main.links] == ["b" * 32]
    assert applied.context is not None and f"{applied.context.trace_id:032x}" == "b" * 32
    assert [link.context.span_id for link in applied.links] == [main.context.span_id]
    assert (main.start_time, main.end_time) == (1_000, 2_000)


def test_a_batch_without_a_traced_event_is_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    tracing.batch("projection risk", [FakeMsg(None)], 1, 2, {}, RuntimeError("db gone"))  # type: ignore[list-item]
    (done,) = spans.get_finished_spans()
    assert done.parent is None and not done.status.is_ok
    assert done.events[0].name == "exception"
