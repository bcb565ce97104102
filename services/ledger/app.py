"""Composition root of the resource ledger: budgets, actuals, capacity and thresholds."""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.ledger import handlers
from services.ledger.projection import NAME, LedgerProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import LedgerSettings


def create_app(settings: LedgerSettings | None = None) -> FastStream:
    settings = settings or LedgerSettings()
    projection = LedgerProjection(settings.over_allocation_tolerance_percent)
    runtime = ServiceRuntime(NAME, settings, projection)
    flusher: handlers.ThresholdFlusher | None = None

    async def thresholds() -> None:
        nonlocal flusher
        if flusher is None:
            flusher = handlers.ThresholdFlusher(runtime.log, projection)
        await flusher.flush()

    class FlushAtStart:
        """What a crash left decided but not appended goes out as soon as the service runs."""

        async def start(self) -> None:
            await thresholds()

        async def stop(self) -> None:
            return None

    runtime.after_batch = thresholds

    def register(broker: NatsBroker, runtime: ServiceRuntime) -> None:
        subjects = runtime.settings.subjects

        @broker.subscriber(subjects.query(NAME, "budget"))
        async def budget(msg: NatsMessage) -> bytes:
            return handlers.budget(projection, msg.body)

        @broker.subscriber(subjects.query(NAME, "capacity"))
        async def capacity(msg: NatsMessage) -> bytes:
            return handlers.capacity(projection, msg.body)

        @broker.subscriber(subjects.query(NAME, "staffing"))
        async def staffing(msg: NatsMessage) -> bytes:
            return handlers.staffing(projection, msg.body)

    return build_app(runtime, register, workers=[FlushAtStart()])
