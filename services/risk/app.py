"""Composition root of the risk monitor: the register, project health, alert rules and
the alerts themselves."""

from __future__ import annotations

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.risk import handlers
from services.risk.flusher import AlertFlusher
from services.risk.projection import NAME, RiskProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import RiskSettings

log = structlog.get_logger(__name__)


def create_app(settings: RiskSettings | None = None) -> FastStream:
    settings = settings or RiskSettings()
    projection = RiskProjection()
    runtime = ServiceRuntime(NAME, settings, projection)

    flusher: AlertFlusher | None = None

    async def flush() -> None:
        nonlocal flusher
        if flusher is None:
            flusher = AlertFlusher(runtime.log, runtime.js, settings.subjects, projection)
        await flusher.flush()

    class FlushAtStart:
        """What a crash left decided but not appended goes out as soon as the service runs."""

        async def start(self) -> None:
            await flush()

        async def stop(self) -> None:
            return None

    runtime.after_batch = flush

    def register(broker: NatsBroker, runtime: ServiceRuntime) -> None:
        subjects = runtime.settings.subjects

        @broker.subscriber(subjects.query(NAME, "alerts"))
        async def open_alerts(_: NatsMessage) -> bytes:
            return handlers.alerts_query(projection)

        @broker.subscriber(subjects.query(NAME, "register"))
        async def register_(_: NatsMessage) -> bytes:
            return handlers.register_query(projection)

        @broker.subscriber(subjects.query(NAME, "backtest"))
        async def backtest(msg: NatsMessage) -> bytes:
            return await handlers.backtest_query(runtime.log, msg.body)

        @broker.subscriber(subjects.query(NAME, "health"))
        async def health(_: NatsMessage) -> bytes:
            return handlers.health_query(projection)

    return build_app(runtime, register, workers=[FlushAtStart()])
