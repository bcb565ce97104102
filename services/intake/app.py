"""Composition root of intake: the front door for every command."""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.intake.aggregates import AggregateStore
from services.intake.handlers import Intake, handle_command
from services.intake.inbox import InboxWorker
from services.intake.projection import IntakeProjection
from shared.ratelimit import RateLimiter
from shared.service import ServiceRuntime, answer, build_app
from shared.settings import IntakeSettings


class IntakeParts:
    """Built once the runtime is connected; handlers and the inbox share one `Intake`."""

    def __init__(self, runtime: ServiceRuntime, projection: IntakeProjection) -> None:
        self.runtime = runtime
        self.projection = projection
        self._intake: Intake | None = None
        self._inbox: InboxWorker | None = None

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            settings = self.runtime.settings
            assert isinstance(settings, IntakeSettings)
            self._intake = Intake(
                runtime=self.runtime,
                projection=self.projection,
                settings=settings,
                aggregates=AggregateStore(self.runtime.log),
                js=self.runtime.js,
                limiter=RateLimiter(settings.source_rate_per_second, settings.source_burst),
            )
        return self._intake

    async def start(self) -> None:
        self._inbox = InboxWorker(self.intake, self.runtime.js)
        await self._inbox.start()

    async def stop(self) -> None:
        if self._inbox is not None:
            await self._inbox.stop()


def create_app(settings: IntakeSettings | None = None) -> FastStream:
    settings = settings or IntakeSettings()
    projection = IntakeProjection()
    runtime = ServiceRuntime("intake", settings, projection)
    parts = IntakeParts(runtime, projection)

    def register(broker: NatsBroker, _: ServiceRuntime) -> None:
        # Many commands in flight at once; two for one aggregate are kept apart by the
        # append's expected position (the loser reloads and decides again).
        @broker.subscriber(
            settings.subjects.commands_all, queue="intake", max_workers=settings.max_in_flight
        )
        async def on_command(msg: NatsMessage) -> bytes:
            reply = await handle_command(parts.intake, msg.raw_message.subject, msg.body)
            return answer(reply)

    return build_app(runtime, register, workers=[parts])
