"""Composition root of the notify service: subscriptions folded from the log, one durable
consumer per subscription on PORTFOLIO_ALERTS, delivery outcomes appended to the log.

Its own service rather than a part of the risk monitor: a slow or dead receiver (a mail
server timing out, a chat hook failing) then never holds up the evaluation of the rules,
delivery scales and restarts on its own, and the monitor stays free of outside I/O."""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.notify import handlers, reports
from services.notify.projection import NAME, NotifyProjection
from shared.service import ServiceRuntime, build_app
from shared.settings import NotifySettings


def create_app(settings: NotifySettings | None = None) -> FastStream:
    settings = settings or NotifySettings()
    projection = NotifyProjection()
    runtime = ServiceRuntime(NAME, settings, projection)
    deliveries = handlers.Deliveries(settings, projection)
    report_deliveries = reports.ReportDeliveries(settings, deliveries.sender, projection)

    async def sync() -> None:
        deliveries.js, deliveries.event_log = runtime.js, runtime.log
        report_deliveries.event_log = runtime.log
        await deliveries.sync()
        if projection.owed:
            report_deliveries.start()

    class Workers:
        async def start(self) -> None:
            projection.changed = True
            await sync()

        async def stop(self) -> None:
            await report_deliveries.stop()
            await deliveries.stop()

    runtime.after_batch = sync

    def register(broker: NatsBroker, runtime: ServiceRuntime) -> None:
        @broker.subscriber(runtime.settings.subjects.query(NAME, "deliveries"))
        async def outcomes(msg: NatsMessage) -> bytes:
            return handlers.deliveries_query(projection, msg.body)

    return build_app(runtime, register, workers=[Workers()])
