"""Prometheus metrics: one registry per process, served on `/metrics` by each service.

Counters end in `_total`, durations are histograms in seconds, and every label takes a few
known values (a service name, a command outcome, a channel): never a project or command
id, which would make a series per entity. A service's figures are the families named
`portfolio_<service>_*` and the samples labelled `service="<service>"`; `portfolio status`
prints the same figures from the service's status answer (`figures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.samples import Sample

from contracts.base import CommandAccepted, CommandRejected

log = structlog.get_logger(__name__)

#: The process's one registry (not prometheus-client's global one, so that importing a
#: library that registers there adds nothing here by surprise).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# --- every service: its projection ---------------------------------------------------------

LOG_POSITION = Gauge(
    "portfolio_log_position",
    "Last position (stream sequence) of the event log, as the service last saw it",
    ["service"],
    registry=REGISTRY,
)
POSITION = Gauge(
    "portfolio_projection_position",
    "Log position the service's projection has applied (committed with its rows)",
    ["service"],
    registry=REGISTRY,
)
LAG = Gauge(
    "portfolio_projection_lag_events",
    "Events in the log the projection has not applied yet",
    ["service"],
    registry=REGISTRY,
)
BATCH_EVENTS = Histogram(
    "portfolio_projection_batch_events",
    "Events per batch applied in one transaction",
    ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "portfolio_projection_batch_duration_seconds",
    "Seconds to apply and commit one batch (after the service's own after-batch work)",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
APPLIED = Counter(
    "portfolio_projection_events_applied",
    "Events the projection applied",
    ["service"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "portfolio_projection_events_skipped",
    "Events the projection could not use, recorded with their reason and passed over",
    ["service"],
    registry=REGISTRY,
)
FAILED_BATCHES = Counter(
    "portfolio_projection_batches_failed",
    "Batches rolled back and read again after a delay",
    ["service"],
    registry=REGISTRY,
)
REBUILDS = Counter(
    "portfolio_projection_rebuilds",
    "Rebuilds of the projection from the whole log (a replay asked for, or a schema change)",
    ["service"],
    registry=REGISTRY,
)

# --- intake ----------------------------------------------------------------------------------

COMMANDS = Counter(
    "portfolio_intake_commands",
    "Commands answered, by path (request or inbox) and outcome (accepted, duplicate, or the "
    "error code of a refusal)",
    ["via", "outcome"],
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "portfolio_intake_command_duration_seconds",
    "Seconds from a request/reply command's arrival to its answer",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
INBOX_PENDING = Gauge(
    "portfolio_intake_inbox_pending",
    "Inbox commands not delivered to intake yet",
    registry=REGISTRY,
)
INBOX_WAITING = Gauge(
    "portfolio_intake_inbox_waiting_for_ack",
    "Inbox commands delivered and not answered yet",
    registry=REGISTRY,
)
INBOX_REDELIVERED = Gauge(
    "portfolio_intake_inbox_redelivered",
    "Inbox commands delivered more than once and not answered yet",
    registry=REGISTRY,
)
INBOX_DEAD_LETTERS = Counter(
    "portfolio_intake_inbox_dead_letters",
    "Inbox messages given up after their deliveries ran out (kept in rejections)",
    registry=REGISTRY,
)

# --- notify ----------------------------------------------------------------------------------

DELIVERIES = Counter(
    "portfolio_notify_deliveries",
    "Alert deliveries to subscribers by channel and outcome (delivered or dead_letter)",
    ["channel", "outcome"],
    registry=REGISTRY,
)
DELIVERY_RETRIES = Counter(
    "portfolio_notify_delivery_retries",
    "Failed delivery attempts that were tried again after a back-off",
    ["channel"],
    registry=REGISTRY,
)
PLAN_DELIVERIES = Counter(
    "portfolio_notify_plan_deliveries",
    "Communication plan deliveries (a report or an alert digest) by content, channel and "
    "outcome (delivered or dead_letter)",
    ["content", "channel", "outcome"],
    registry=REGISTRY,
)
PLAN_DELIVERY_RETRIES = Counter(
    "portfolio_notify_plan_delivery_retries",
    "Failed communication plan delivery attempts tried again after a back-off",
    ["content", "channel"],
    registry=REGISTRY,
)
PLAN_DELIVERIES_OWED = Gauge(
    "portfolio_notify_plan_deliveries_owed",
    "Communication plan deliveries owed and not yet delivered or dead-lettered",
    registry=REGISTRY,
)


#: Every metric above: what a service's status answer reads (`figures`).
PORTFOLIO_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    LOG_POSITION,
    POSITION,
    LAG,
    BATCH_EVENTS,
    BATCH_SECONDS,
    APPLIED,
    SKIPPED,
    FAILED_BATCHES,
    REBUILDS,
    COMMANDS,
    COMMAND_SECONDS,
    INBOX_PENDING,
    INBOX_WAITING,
    INBOX_REDELIVERED,
    INBOX_DEAD_LETTERS,
    DELIVERIES,
    DELIVERY_RETRIES,
    PLAN_DELIVERIES,
    PLAN_DELIVERY_RETRIES,
    PLAN_DELIVERIES_OWED,
)


def outcome(reply: CommandAccepted | CommandRejected) -> str:
    """The `outcome` label of a command's answer: a handful of values, never an id."""
    if isinstance(reply, CommandAccepted):
        return "duplicate" if reply.duplicate else "accepted"
    return str(reply.error.code)


_commands: dict[tuple[str, str], Counter] = {}


def count_command(via: str, outcome: str) -> None:
    """`COMMANDS.labels(via, outcome).inc()`, with the labelled child kept: a lookup per
    command instead of `labels()`' validation and lock (a few microseconds on this path)."""
    child = _commands.get((via, outcome))
    if child is None:
        child = _commands[(via, outcome)] = COMMANDS.labels(via, outcome)
    child.inc()


# --- the figures a service's status shows ----------------------------------------------------


def sample_name(sample: Sample) -> str:
    """A sample in Prometheus' own notation, e.g. `portfolio_intake_commands_total{...}`."""
    if not sample.labels:
        return sample.name
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}"


def figures(service: str) -> dict[str, float]:
    """This service's samples (not the histogram buckets): what `portfolio status` prints."""
    found: dict[str, float] = {}
    own = f"portfolio_{service}_"
    for metric in PORTFOLIO_METRICS:  # not the process collectors: they read /proc
        (family,) = metric.collect()
        mine = family.name.startswith(own)
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            if mine or sample.labels.get("service") == service:
                labels = {k: v for k, v in sample.labels.items() if k != "service"}
                found[sample_name(sample._replace(labels=labels))] = float(sample.value)
    return found


#: What runs before a scrape: reads the figures that live on the server into the gauges.
Refresh = Callable[[], Awaitable[object]]


# --- the endpoint ----------------------------------------------------------------------------


class MetricsServer:
    """`GET /metrics` of one service, in its own event loop: `refresh` runs first, so the
    gauges read from the server (log position, lag, the inbox) are current at every scrape."""

    def __init__(self, host: str, port: int, refresh: Refresh | None = None) -> None:
        self.host = host
        self.port = port
        self.refresh = refresh
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen on the port asked for; when it is taken, on a free one (logged). Returns
        the port actually listened on."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            try:
                await site.start()
            except OSError as error:
                if self.port == 0 or error.errno != errno.EADDRINUSE:
                    raise
                log.warning("metrics.port_taken", port=self.port, host=self.host)
                site = web.TCPSite(runner, self.host, 0)
                await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.port
        return self.port

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):  # what to show, not what to bind
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        if self.refresh is not None:
            try:
                await asyncio.wait_for(self.refresh(), timeout=5)
            except Exception as error:  # noqa: BLE001 - the counters are still worth serving
                log.warning("metrics.refresh_failed", error=repr(error))
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
