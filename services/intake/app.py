"""Composition root of intake: the front door for every command."""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage

from services.intake.aggregates import AggregateStore
from services.intake.handlers import Intake, handle_command
from services.intake.projection import IntakeProjection
from shared.service import ServiceRuntime, answer, build_app
from shared.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None) -> FastStream:
    settings = settings or IntakeSettings()
    projection = IntakeProjection()
    runtime = ServiceRuntime("intake", settings, projection)
    holder: dict[str, Intake] = {}

    def intake() -> Intake:
        if "intake" not in holder:
            holder["intake"] = Intake(
                runtime=runtime,
                projection=projection,
                settings=settings,
                aggregates=AggregateStore(runtime.log),
                js=runtime.js,
            )
        return holder["intake"]

    def register(broker: NatsBroker, _: ServiceRuntime) -> None:
        @broker.subscriber(settings.subjects.commands_all, queue="intake")
        async def on_command(msg: NatsMessage) -> bytes:
            reply = await handle_command(intake(), msg.raw_message.subject, msg.body)
            return answer(reply)

    return build_app(runtime, register)
