"""Composition root of intake: the front door for every command."""

from __future__ import annotations

import asyncio
import time

import structlog
from faststream import FastStream
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import SpanKind

from services.intake.aggregates import AggregateStore
from services.intake.handlers import Intake, handle_command
from services.intake.inbox import InboxWorker
from services.intake.projection import IntakeProjection
from shared import metrics, tracing
from shared.ratelimit import RateLimiter
from shared.service import ServiceRuntime, answer, build_app, tune_collector
from shared.settings import IntakeSettings

log = structlog.get_logger(__name__)


class IntakeParts:
    """Built once the runtime is connected; handlers and the inbox share one `Intake`."""

    def __init__(self, runtime: ServiceRuntime, projection: IntakeProjection) -> None:
        self.runtime = runtime
        self.projection = projection
        self._intake: Intake | None = None
        self._inbox: InboxWorker | None = None
        self._subscriptions: list[Subscription] = []
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(1)

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            settings = self.runtime.settings
            assert isinstance(settings, IntakeSettings)
            self._intake = Intake(
                runtime=self.runtime,
                settings=settings,
                aggregates=AggregateStore(self.runtime.log),
                js=self.runtime.js,
                limiter=RateLimiter(settings.source_rate_per_second, settings.source_burst),
                command_ids=self.projection.command_ids,
            )
        return self._intake

    async def start(self) -> None:
        await self._index_current()
        self._inbox = InboxWorker(self.intake, self.runtime.js)
        await self._inbox.start()
        self.runtime.inbox_status = self._inbox.status
        # The hot path: commands straight from the NATS connection, many at once. Two for one
        # aggregate are kept apart by the append's expected position (the loser decides
        # again); FastStream's per-message machinery would cost as much as the decision.
        settings = self.intake.settings
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        # `<prefix>.cmd.<Command>`, and `.<principal>` after it (principals.py).
        commands = settings.subjects.commands_all
        self._subscriptions = [
            await self.runtime.nc.subscribe(subject, queue="intake", cb=self._on_command)
            for subject in (commands, f"{commands}.*")
        ]
        # Again now that the inbox and the command-id index are loaded (they live as long
        # as the process).
        tune_collector()

    async def _index_current(self) -> None:
        """Take no command before the command-id index holds the whole log as it is now
        (command_ids.py): intake's projection has applied it."""
        end = await self.runtime.log.last_position()
        while self.runtime.runner.position < end:  # noqa: ASYNC110 - the runner sets no event per position
            await asyncio.sleep(0.05)
        self.intake.command_ids.ready.set()
        log.info("intake.command_ids_loaded", commands=len(self.intake.command_ids))

    async def _on_command(self, msg: Msg) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(msg))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, msg: Msg) -> None:
        started = time.perf_counter()
        reply = None
        try:
            # A span per command, in the sender's trace (its `traceparent` header); the
            # append stores it in the event's headers. A no-op when tracing is off.
            with tracing.span("intake command", msg.headers, SpanKind.SERVER) as span:
                reply = await handle_command(self.intake, msg.subject, msg.data)
                if span is not None:
                    outcome = metrics.outcome(reply)
                    span.set_attributes({"portfolio.outcome": outcome, "subject": msg.subject})
            if msg.reply:
                await msg.respond(answer(reply))
        except Exception:  # the sender times out and retries with the same id (logged)
            log.exception("command.failed", subject=msg.subject)
        finally:
            outcome = "failed" if reply is None else metrics.outcome(reply)
            metrics.count_command("request", outcome)
            metrics.COMMAND_SECONDS.observe(time.perf_counter() - started)
            self._slots.release()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        if self._running:
            await asyncio.wait(self._running, timeout=10)
        if self._inbox is not None:
            await self._inbox.stop()


def create_app(settings: IntakeSettings | None = None) -> FastStream:
    settings = settings or IntakeSettings()
    projection = IntakeProjection()
    runtime = ServiceRuntime("intake", settings, projection)
    parts = IntakeParts(runtime, projection)

    return build_app(runtime, workers=[parts])
