"""Operators see it: Prometheus `/metrics` per service and OpenTelemetry traces through NATS,
against a real nats-server and real databases (services in this process).

The registry is the process's own (one per process), shared by every service this test
runs, so each check compares a scrape after the work with a scrape before it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from nats.aio.client import Client
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from contracts.base import CommandAccepted, CommandRejected
from contracts.projects import ProposeProject
from contracts.subjects import LOG_STREAM
from shared import tracing
from shared.client import PortfolioClient
from shared.eventlog import EventLog
from tests.integration.gateway_support import gateway, post
from tests.integration.helpers import (
    accepted,
    caught_up,
    project_risk,
    proposal,
    query,
    running,
    send,
    status,
    wait_for_status,
)

Samples = dict[str, float]


async def scrape(url: str) -> Samples:
    """Every sample of a `/metrics` page, keyed `name{label="value",...}` (labels sorted)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def moved(before: Samples, after: Samples, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def commands(via: str, outcome: str) -> str:
    return f'portfolio_intake_commands_total{{outcome="{outcome}",via="{via}"}}'


def of(name: str, service: str) -> str:
    return f'{name}{{service="{service}"}}'


def propose(project_id: str, command_id: str | None = None) -> ProposeProject:
    command = ProposeProject(
        project_id=project_id,
        name="Data platform",
        sponsor="cdo",
        planned_start=date(2027, 1, 1),
        planned_end=date(2027, 6, 30),
    )
    return command.model_copy(update={"command_id": command_id}) if command_id else command


async def test_metrics_move_by_what_was_done(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "ledger", nats_url, tmp_path),
        await PortfolioClient.connect(nats_url) as client,
    ):
        intake = await status(nc, "intake")
        ledger = await status(nc, "ledger")
        assert intake is not None and ledger is not None
        assert intake.metrics_url is not None and intake.metrics_url.endswith("/metrics")
        assert ledger.metrics_url is not None and ledger.metrics_url != intake.metrics_url
        before = await scrape(intake.metrics_url)
        start = await event_log.last_position()

        for n in range(5):  # five accepted by request/reply
            assert isinstance(await client.send(propose(f"M-{n}")), CommandAccepted)
        again = propose("M-9", command_id="cmd-m-9")
        assert isinstance(await client.send(again), CommandAccepted)
        repeat = await client.send(again)  # the same command again: a duplicate
        assert isinstance(repeat, CommandAccepted) and repeat.duplicate
        for bad in (b"{not json", json.dumps(proposal("M-x", capex="-5")).encode()):
            reply = await send(nc, "ProposeProject", bad)
            assert isinstance(reply, CommandRejected)
        ids = [await client.send_to_inbox(propose(f"M-in-{n}")) for n in range(3)]
        for command_id in ids:
            assert isinstance(await client.result(command_id), CommandAccepted)
        # An event no projection can use: skipped and counted, never a stalled loop.
        await nc.jetstream().publish("portfolio.events.project.M-bad", b"\xff not an event")
        end = await event_log.last_position()
        assert end == start + 5 + 1 + 3 + 1
        await caught_up(nc, "intake", end)
        await caught_up(nc, "ledger", end)
        # The inbox answered its three (acked) before the scrape reads its counter.
        await wait_for_status(nc, "intake", lambda s: s.inbox and s.inbox.answered_since_start >= 3)

        after = await scrape(intake.metrics_url)
        assert moved(before, after, commands("request", "accepted")) == 6
        assert moved(before, after, commands("request", "duplicate")) == 1
        assert moved(before, after, commands("request", "malformed")) == 1
        assert moved(before, after, commands("request", "validation_failed")) == 1
        assert moved(before, after, commands("inbox", "accepted")) == 3
        assert moved(before, after, "portfolio_intake_command_duration_seconds_count") == 9
        for service in ("intake", "ledger"):
            applied = of("portfolio_projection_events_applied_total", service)
            skipped = of("portfolio_projection_events_skipped_total", service)
            assert moved(before, after, applied) == 9, service
            assert moved(before, after, skipped) == 1, service
            events = of("portfolio_projection_batch_events_sum", service)
            assert moved(before, after, events) == 10, service  # every event in some batch
            batches = of("portfolio_projection_batch_duration_seconds_count", service)
            assert moved(before, after, batches) >= 1
            assert after[of("portfolio_projection_position", service)] == end
            assert after[of("portfolio_projection_lag_events", service)] == 0
            assert after[of("portfolio_log_position", service)] == end
        assert after["portfolio_intake_inbox_pending"] == 0
        assert after["portfolio_intake_inbox_waiting_for_ack"] == 0
        assert "process_resident_memory_bytes" in after
        assert not [key for key in after if "M-" in key]  # never an id in a label

        # `portfolio status` reads the same figures from the status answer.
        shown = await status(nc, "intake")
        assert shown is not None
        for key in (commands("request", "accepted"), commands("inbox", "accepted")):
            assert shown.metrics[key] == after[key]
        assert (
            shown.metrics["portfolio_projection_events_applied_total"]
            == after[of("portfolio_projection_events_applied_total", "intake")]
        )
        assert not any("ledger" in key for key in shown.metrics)

        # A replay is a rebuild: counted, and the log applied again.
        await client.replay("ledger")
        await wait_for_status(nc, "ledger", lambda s: s.rebuilds_since_start == 1)
        await caught_up(nc, "ledger", end)
        again_after = await scrape(ledger.metrics_url)
        rebuilds = of("portfolio_projection_rebuilds_total", "ledger")
        assert moved(after, again_after, rebuilds) == 1
        applied = of("portfolio_projection_events_applied_total", "ledger")
        assert moved(after, again_after, applied) == end - (await skipped_so_far(nc))


async def skipped_so_far(nc: Client) -> int:
    """Events of the whole log the ledger skips (this test's bad one, and no other)."""
    found = await status(nc, "ledger")
    assert found is not None
    return found.skipped_events


async def test_metrics_port_off_and_fixed(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with running(nc, "risk", nats_url, tmp_path, metrics_port=-1):
        found = await status(nc, "risk")
        assert found is not None and found.metrics_url is None
        assert found.metrics  # the figures are in the status answer all the same


# --- traces --------------------------------------------------------------------------------


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
        provider.shutdown()


def in_trace(found: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in found if s.context is not None and s.context.trace_id == trace_id]


def covers(span: ReadableSpan, position: int) -> bool:
    """Whether a projection's batch span covers this log position."""
    attributes = span.attributes or {}
    first, last = (
        attributes["portfolio.batch.first_position"],
        attributes["portfolio.batch.last_position"],
    )
    assert isinstance(first, int) and isinstance(last, int)
    return first <= position <= last


async def event_headers(nc: Client, position: int) -> dict[str, str]:
    msg = await nc.jetstream().get_msg(LOG_STREAM, position)
    return dict(msg.headers or {})


async def test_one_trace_from_a_command_to_every_projection_batch(
    nc: Client, nats_url: str, tmp_path: Path, spans: InMemorySpanExporter, event_log: EventLog
) -> None:
    services = ("intake", "ledger", "risk", "reporting")
    async with contextlib.AsyncExitStack() as stack:
        for name in services:
            await stack.enter_async_context(running(nc, name, nats_url, tmp_path))
        client = await stack.enter_async_context(await PortfolioClient.connect(nats_url))
        # Some traffic first, so the command's event may share a batch with others.
        await asyncio.gather(*(client.send(propose(f"T-{n}")) for n in range(20)))
        spans.clear()
        reply = await client.send(propose("T-traced"))
        assert isinstance(reply, CommandAccepted)
        (appended,) = reply.events
        inbox_id = await client.send_to_inbox(propose("T-inbox"))
        inboxed = await client.result(inbox_id)
        assert isinstance(inboxed, CommandAccepted)
        end = await event_log.last_position()
        for service in services:
            await caught_up(nc, service, end)

        found = spans.get_finished_spans()
        (sent,) = [s for s in found if s.name == "send ProposeProject"]
        assert sent.kind == SpanKind.CLIENT and sent.context is not None
        trace = in_trace(found, sent.context.trace_id)
        (command,) = [s for s in trace if s.name == "intake command"]
        assert command.parent is not None and command.parent.span_id == sent.context.span_id
        assert command.attributes is not None
        assert command.attributes["portfolio.outcome"] == "accepted"
        # The event in the log carries the command span's context.
        stored = await event_headers(nc, appended.position)
        assert command.context is not None
        assert stored["traceparent"].split("-")[1] == f"{command.context.trace_id:032x}"
        assert stored["traceparent"].split("-")[2] == f"{command.context.span_id:016x}"
        # Every projection's batch that applied it is in the same trace.
        for service in services:
            batches = [
                s
                for s in trace
                if s.name.startswith(f"projection {service}") and covers(s, appended.position)
            ]
            assert len(batches) == 1, (service, [s.name for s in trace])
            assert batches[0].kind == SpanKind.CONSUMER

        # The inbox path: the producer's span, intake's inbox span, every projection.
        (produced,) = [s for s in found if s.name == "send ProposeProject to the inbox"]
        assert produced.context is not None
        inbox_trace = in_trace(found, produced.context.trace_id)
        assert [s.name for s in inbox_trace].count("intake inbox command") == 1
        for service in services:
            assert any(s.name.startswith(f"projection {service}") for s in inbox_trace), service


async def test_no_trace_context_when_tracing_is_off(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    tracing.use(None)
    seen: list[dict[str, str]] = []

    async def watch(msg: object) -> None:
        seen.append(dict(getattr(msg, "headers", None) or {}))

    await nc.subscribe("portfolio.cmd.>", cb=watch)
    async with (
        running(nc, "intake", nats_url, tmp_path),
        await PortfolioClient.connect(nats_url) as client,
    ):
        reply = await client.send(propose("O-1"))
        assert isinstance(reply, CommandAccepted)
        (appended,) = reply.events
        assert "traceparent" not in await event_headers(nc, appended.position)
    assert seen and all("traceparent" not in headers for headers in seen)


async def test_a_bad_traceparent_is_ignored(
    nc: Client, nats_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """A sender's broken header costs nothing: the command gets a trace of its own."""
    async with running(nc, "intake", nats_url, tmp_path):
        for bad in ("00-zz-yy-01", "\n", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 5000):
            body = json.dumps(proposal(f"B-{len(spans.get_finished_spans())}")).encode()
            msg = await nc.request(
                "portfolio.cmd.ProposeProject", body, timeout=10, headers={"traceparent": bad}
            )
            assert json.loads(msg.data)["status"] == "accepted"
        commands = [s for s in spans.get_finished_spans() if s.name == "intake command"]
        assert len(commands) == 4
        assert all(s.parent is None for s in commands)


async def test_alert_deliveries_counted_by_channel_and_outcome(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    calls: dict[str, int] = {}

    async def hook(request: web.Request) -> web.Response:
        """`/gone` is gone (404: no retry); `/flaky` fails once (500), then takes it."""
        calls[request.path] = calls.get(request.path, 0) + 1
        code = 404 if request.path == "/gone" else 500 if calls[request.path] == 1 else 200
        return web.Response(status=code, text="ok" if code == 200 else "no")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    notify = {"notify_max_attempts": 3, "notify_backoff_seconds": 0.05}
    try:
        async with (
            running(nc, "intake", nats_url, tmp_path),
            running(nc, "risk", nats_url, tmp_path),
            running(nc, "notify", nats_url, tmp_path, **notify),
        ):
            found = await status(nc, "notify")
            assert found is not None and found.metrics_url is not None
            before = await scrape(found.metrics_url)
            await accepted(nc, "ProposeProject", proposal("N-1"))
            for name in ("flaky", "gone"):
                target = f"http://127.0.0.1:{port}/{name}"
                subscription = {"subscription_id": name, "channel": "slack", "target": target}
                await accepted(nc, "Subscribe", subscription)
            await asyncio.sleep(1.0)  # the subscriptions' workers start (as test_notify does)
            await accepted(nc, "IdentifyRisk", project_risk("R-1", "N-1"))
            for _ in range(300):
                done = json.loads(await query(nc, "notify", "deliveries", {}))["deliveries"]
                if len(done) == 2:
                    break
                await asyncio.sleep(0.1)
            assert sorted(x["outcome"] for x in done) == ["dead_letter", "delivered"]
            after = await scrape(found.metrics_url)
    finally:
        await runner.cleanup()
    key = 'portfolio_notify_deliveries_total{{channel="slack",outcome="{}"}}'
    assert moved(before, after, key.format("delivered")) == 1
    assert moved(before, after, key.format("dead_letter")) == 1
    retries = 'portfolio_notify_delivery_retries_total{channel="slack"}'
    assert moved(before, after, retries) == 1  # the flaky hook's 500; a 404 is not retried


async def test_the_gateway_carries_the_http_callers_trace_to_the_log(
    nc: Client, nats_url: str, tmp_path: Path, spans: InMemorySpanExporter, event_log: EventLog
) -> None:
    caller = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    async with (
        running(nc, "intake", nats_url, tmp_path),
        gateway(nats_url) as base,
        aiohttp.ClientSession() as http,
    ):
        code, answer, _ = await post(
            http,
            f"{base}/v1/commands/ProposeProject",
            {k: v for k, v in proposal("G-1").items() if k != "actor"},  # acts as itself
            {"traceparent": caller, "tracestate": "vendor=1"},
        )
        assert code == 200, answer
        position = answer["events"][0]["position"]
        stored = await event_headers(nc, position)
    assert stored["traceparent"].split("-")[1] == "c" * 32
    assert stored["tracestate"] == "vendor=1"
    found = spans.get_finished_spans()
    (http_span,) = [s for s in found if s.name == "http POST /v1/commands/{command}"]
    assert http_span.parent is not None and f"{http_span.parent.span_id:016x}" == "d" * 16
    (command,) = [s for s in found if s.name == "intake command"]
    assert command.parent is not None and http_span.context is not None
    assert command.parent.span_id == http_span.context.span_id
