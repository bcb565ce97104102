"""Composition root of prioritization: rankings kept current, scenarios on request."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.prioritization import handlers
from services.prioritization.projection import NAME, PrioritizationProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import PrioritizationSettings

log = structlog.get_logger(__name__)


class Reprioritizer:
    """Ranks again when inputs change, debounced: once the projection is caught up and no
    input has changed for `quiet` seconds (or after `longest` seconds of constant change),
    so that an import of a thousand projects yields one ranking, not a thousand."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        projection: PrioritizationProjection,
        quiet: float,
        longest: float,
    ) -> None:
        self.runtime = runtime
        self.projection = projection
        self.quiet = quiet
        self.longest = longest
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reprioritize")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        first_change: float | None = None
        last_seen = None
        while True:
            await asyncio.sleep(self.quiet / 4)
            if not self.projection.dirty:
                first_change = None
                continue
            now = time.monotonic()
            if self.projection.last_input is not last_seen:
                last_seen = self.projection.last_input
                changed_at = now
                first_change = first_change or now
            caught_up = self.runtime.runner.caught_up.is_set()
            settled = caught_up and now - changed_at >= self.quiet
            if not settled and now - (first_change or now) < self.longest:
                continue
            self.projection.dirty = False
            first_change = None
            try:
                await handlers.reprioritize(self.runtime.log, self.projection)
            except Exception:  # retried at the next change; the loop must go on (logged)
                log.exception("ranking.failed")
                self.projection.dirty = True


def create_app(settings: PrioritizationSettings | None = None) -> FastStream:
    settings = settings or PrioritizationSettings()
    projection = PrioritizationProjection()
    runtime = ServiceRuntime(NAME, settings, projection)
    reprioritizer = Reprioritizer(
        runtime,
        projection,
        settings.reprioritize_quiet_seconds,
        settings.reprioritize_longest_seconds,
    )

    limit = settings.selection_time_limit_seconds

    def register(broker: NatsBroker, runtime: ServiceRuntime) -> None:
        subjects = runtime.settings.subjects

        @broker.subscriber(subjects.query(NAME, "ranking"))
        async def ranking(msg: NatsMessage) -> bytes:
            return await handlers.ranking_query(projection, msg.body)

        @broker.subscriber(subjects.query(NAME, "scenario"))
        async def scenario(msg: NatsMessage) -> bytes:
            return await handlers.scenario_query(projection, msg.body, limit)

        @broker.subscriber(subjects.query(NAME, "frontier"))
        async def frontier(msg: NatsMessage) -> bytes:
            return await handlers.frontier_query(projection, msg.body, limit)

        @broker.subscriber(subjects.control(NAME, "commit"))
        async def commit(msg: NatsMessage) -> bytes:
            return await handlers.commit_scenario(runtime.log, projection, msg.body, limit)

    return build_app(runtime, register, workers=[reprioritizer])
