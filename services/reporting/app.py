"""Composition root of reporting: the read side, and the audit trail."""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.reporting import handlers
from services.reporting.projection import NAME, ReportingProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import ReportingSettings


def create_app(settings: ReportingSettings | None = None) -> FastStream:
    projection = ReportingProjection()
    runtime = ServiceRuntime(NAME, settings or ReportingSettings(), projection)

    def register(broker: NatsBroker, runtime: ServiceRuntime) -> None:
        @broker.subscriber(runtime.settings.subjects.query(NAME, "audit"))
        async def audit(msg: NatsMessage) -> bytes:
            return await handlers.audit(runtime, projection, msg.body)

    return build_app(runtime, register)
