"""Composition root of reporting: the read side, the audit trail, reports at any point in
time, their publication (on request, and on a schedule when configured), and the live
dashboard over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.reporting import handlers
from services.reporting.dashboard import Dashboard
from services.reporting.projection import NAME, ReportingProjection
from services.reporting.snapshots import Snapshotter
from shared.service import ServiceRuntime, build_app
from shared.settings import ReportingSettings

log = structlog.get_logger(__name__)


class ScheduledPublisher:
    """Publishes the portfolio report every `every` seconds, unless nothing but published
    reports has been appended since the last publication."""

    def __init__(self, runtime: ServiceRuntime, every: float, snapshotter: Snapshotter) -> None:
        self.runtime = runtime
        self.every = every
        self.snapshotter = snapshotter
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.every > 0:
            self._task = asyncio.create_task(self._run(), name="publish-reports")

    async def stop(self) -> None:
        # A cancellation that lands in a log read may be taken for a timeout (nats-py's
        # fetch): the loop also checks this flag.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)

    async def _run(self) -> None:
        request = handlers.PublishRequest(
            rationale=f"scheduled publication (every {self.every:g} s)",
            actor="reporting",
            source="reporting",
        )
        seen = -1
        while not self._stopping:
            await asyncio.sleep(self.every)
            try:
                # Nothing appended since the last look: no need to read the log at all.
                position = await self.runtime.log.last_position()
                if position == seen:
                    continue
                published = await handlers.publish_report(
                    self.runtime.log,
                    request,
                    datetime.now(UTC),
                    handlers.message_limit(self.runtime),
                    scheduled=True,
                    skip_unchanged=True,
                    snapshots=self.snapshotter.store,
                )
                # After a publication, look again next time: an event may have landed
                # between the read and the append.
                seen = -1 if published else position
            except Exception:  # tried again at the next tick; the loop must go on (logged)
                log.exception("report.scheduled_publication_failed")


def create_app(settings: ReportingSettings | None = None) -> FastStream:
    settings = settings or ReportingSettings()
    projection = ReportingProjection()
    runtime = ServiceRuntime(NAME, settings, projection)
    snapshotter = Snapshotter(runtime, settings.report_snapshot_every)
    projection.followers.append(snapshotter.committed)
    publisher = ScheduledPublisher(runtime, settings.report_publish_every_seconds, snapshotter)
    dashboard = Dashboard(runtime, projection, settings, lambda: snapshotter.store)

    def register(broker: NatsBroker, runtime: ServiceRuntime) -> None:
        subjects = runtime.settings.subjects

        @broker.subscriber(subjects.query(NAME, "audit"))
        async def audit(msg: NatsMessage) -> bytes:
            return await handlers.audit(runtime, projection, msg.body)

        @broker.subscriber(subjects.query(NAME, "report"))
        async def report(msg: NatsMessage) -> bytes:
            return await handlers.report(runtime, msg.body, snapshots=snapshotter.store)

        @broker.subscriber(subjects.query(NAME, "forecast"))
        async def forecast(msg: NatsMessage) -> bytes:
            return await handlers.forecast(runtime, msg.body, snapshots=snapshotter.store)

        @broker.subscriber(subjects.query(NAME, "lessons"))
        async def lessons(msg: NatsMessage) -> bytes:
            return await handlers.lessons(runtime, msg.body, snapshots=snapshotter.store)

        @broker.subscriber(subjects.query(NAME, "snapshots"))
        async def snapshots(_: NatsMessage) -> bytes:
            return json.dumps(await snapshotter.describe()).encode()

        @broker.subscriber(subjects.query(NAME, "dashboard"))
        async def dashboard_address(_: NatsMessage) -> bytes:
            """Where the dashboard listens (its port may be a free one picked at start)."""
            return json.dumps({"url": dashboard.url}).encode()

        @broker.subscriber(subjects.control(NAME, "publish"))
        async def publish(msg: NatsMessage) -> bytes:
            return await handlers.publish(runtime, msg.body, snapshots=snapshotter.store)

    return build_app(runtime, register, workers=[snapshotter, publisher, dashboard])
