"""Composition root of the risk monitor: the register, project health, alert rules and
the alerts themselves."""

from __future__ import annotations

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.risk import handlers
from services.risk.projection import NAME, RiskProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import RiskSettings

log = structlog.get_logger(__name__)


def create_app(settings: RiskSettings | None = None) -> FastStream:
    settings = settings or RiskSettings()
    projection = RiskProjection()
    runtime = ServiceRuntime(NAME, settings, projection)

    async def evaluate() -> None:
        await handlers.evaluate_alerts(runtime.log, runtime.js, settings.subjects, projection)

    runtime.after_batch = evaluate

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

    return build_app(runtime, register)
