"""The durable inbox: commands published fire-and-forget to `portfolio.inbox.<Command>`.

A batch is parsed once and split by aggregate: one aggregate's commands run in the order
they arrived, different aggregates run at once, so a batch's appends are in flight
together. Every outcome is published under its command id on
`portfolio.results.<command_id>`, a batch's outcomes all at once; a message is
acknowledged only after its outcome is stored, so an intake crash means redelivery, and
the command id makes that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from contracts.base import AggregateKey, Command
from contracts.subjects import INBOX_STREAM
from services.intake.handlers import Intake, Reply, handle_parsed, reject
from services.intake.principals import address_of, bind
from shared.commands import InvalidInput, parse_command
from shared.eventlog import inbox_stream_config

log = structlog.get_logger(__name__)

CONSUMER = "intake-inbox"


class InboxWorker:
    def __init__(self, intake: Intake, js: JetStreamContext) -> None:
        self.intake = intake
        self.js = js
        self.subjects = intake.settings.subjects
        self.batch_size = intake.settings.inbox_batch_size
        self.retry_delay = intake.settings.projection_retry_delay_seconds
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = False

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=60,
            max_ack_pending=self.batch_size * 4,
            # `<prefix>.inbox.<Command>` and `<prefix>.inbox.<Command>.<principal>`
            filter_subject=f"{self.subjects.prefix}.inbox.>",
        )
        await self._take_principals()
        await self.js.add_consumer(INBOX_STREAM, config)
        self._sub = await self.js.pull_subscribe_bind(CONSUMER, stream=INBOX_STREAM)
        self._task = asyncio.create_task(self._run(), name="intake-inbox")

    async def _take_principals(self) -> None:
        """An inbox stream created before senders named themselves in the subject gets the
        `<prefix>.inbox.<Command>.<principal>` subjects added (once)."""
        info = await self.js.stream_info(INBOX_STREAM)
        wanted = inbox_stream_config(self.subjects).subjects or []
        if set(wanted) <= set(info.config.subjects or []):
            return
        try:
            await self.js.update_stream(info.config.evolve(subjects=wanted))
        except Exception:  # e.g. not permitted: an operator adds the subjects (logged)
            log.exception("inbox.subjects_not_added", stream=INBOX_STREAM, subjects=wanted)

    async def stop(self) -> None:
        # nats-py's fetch can turn a cancellation into a timeout, so the loop also checks
        # a flag rather than relying on cancellation alone.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        assert self._sub is not None
        while not self._stopping:
            try:
                msgs = await self._sub.fetch(self.batch_size, timeout=0.5)
            except TimeoutError:
                continue
            except NotFoundError:
                await asyncio.sleep(self.retry_delay)
                continue
            except Exception:  # the loop must outlive any failure (logged)
                log.exception("inbox.fetch_failed")
                await asyncio.sleep(self.retry_delay)
                continue
            await self.process(msgs)

    async def process(self, msgs: list[Msg]) -> None:
        inbound = [self._parse(msg) for msg in msgs]
        groups = _independent_groups(inbound)
        answered = await asyncio.gather(*(self._in_order(group) for group in groups))
        await self._record([pair for group in answered for pair in group])

    def _parse(self, msg: Msg) -> Inbound:
        settings = self.intake.settings
        to = address_of(settings.subject_prefix, msg.subject)
        try:
            command = parse_command(to.command, msg.data, settings.max_command_bytes)
            if "command_id" not in command.model_fields_set:
                # An id that survives redelivery (never a fresh UUID: it would append twice).
                command = command.model_copy(update={"command_id": _fallback_id(msg)})
            command = bind(command, to.principal, settings)
        except InvalidInput as invalid:
            return Inbound(msg, to.command, invalid)
        return Inbound(msg, to.command, command)

    async def _in_order(self, group: list[Inbound]) -> list[tuple[Msg, Reply]]:
        answered: list[tuple[Msg, Reply]] = []
        for index, item in enumerate(group):
            try:
                answered.append((item.msg, await self._answer(item)))
            except Exception:  # redelivered later; the command id keeps that harmless
                log.exception("inbox.command_failed", subject=item.msg.subject)
                for later in group[index:]:
                    await later.msg.nak(delay=self.retry_delay)
                break
        return answered

    async def _answer(self, item: Inbound) -> Reply:
        msg, parsed = item.msg, item.parsed
        if isinstance(parsed, InvalidInput):
            command_id = parsed.command_id or _fallback_id(msg)
            error, actor = parsed.error, parsed.actor
            return await reject(
                self.intake, msg.subject, msg.data, error, item.name, command_id, actor
            )
        return await handle_parsed(self.intake, msg.subject, msg.data, item.name, parsed)

    async def _record(self, answered: list[tuple[Msg, Reply]]) -> None:
        """Publish a batch's outcomes at once, then acknowledge each one that was stored."""
        stored = []
        for msg, reply in answered:
            stored.append(
                await self.js.publish_async(
                    self.subjects.result(reply.command_id or _fallback_id(msg)),
                    reply.model_dump_json().encode(),
                    headers={"Portfolio-Outcome": reply.status},
                )
            )
        if stored:
            await asyncio.wait(stored, timeout=self.intake.settings.request_timeout_seconds)
        for (msg, _), future in zip(answered, stored, strict=True):
            if future.done() and not future.cancelled() and future.exception() is None:
                await msg.ack()
                continue
            future.cancel()
            log.warning("inbox.result_not_stored", subject=msg.subject)
            await msg.nak(delay=self.retry_delay)


@dataclass(frozen=True)
class Inbound:
    msg: Msg
    name: str
    parsed: Command | InvalidInput

    def touches(self) -> set[AggregateKey]:
        """The aggregates a command touches (its own and those its decision reads), enough
        to order a batch. Unreadable input stands alone."""
        if isinstance(self.parsed, InvalidInput):
            return {("_unreadable", str(self.msg.metadata.sequence.stream))}
        return {self.parsed.aggregate_key(), *self.parsed.references()}


def _independent_groups(inbound: list[Inbound]) -> list[list[Inbound]]:
    """Split a batch so that commands touching a common aggregate (say, an objective and a
    proposal serving it) stay in arrival order, while unrelated ones can run at once."""
    parent = list(range(len(inbound)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[AggregateKey, int] = {}
    for index, item in enumerate(inbound):
        for key in item.touches():
            if key in owner:
                parent[root(index)] = root(owner[key])
            else:
                owner[key] = index
    groups: dict[int, list[Inbound]] = {}
    for index, item in enumerate(inbound):
        groups.setdefault(root(index), []).append(item)
    return list(groups.values())


def _fallback_id(msg: Msg) -> str:
    """The sender's message id stands in for a missing command id (or, failing that, the
    inbox position): stable across redeliveries."""
    sent_id = (msg.headers or {}).get("Nats-Msg-Id")
    if sent_id and all(c.isalnum() or c in "_-:" for c in sent_id):
        return sent_id
    return f"inbox-{msg.metadata.sequence.stream}"
