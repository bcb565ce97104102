"""The durable inbox: commands published fire-and-forget to `portfolio.inbox.<Command>`.

Each batch is split by aggregate: one aggregate's commands run in the order they arrived,
different aggregates run concurrently. Every outcome is published under its command id on
`portfolio.results.<command_id>`; a message is acknowledged only after its outcome is
recorded, so an intake crash means redelivery, and the command id makes that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts.base import AggregateKey
from contracts.registry import COMMANDS
from contracts.subjects import INBOX_STREAM
from services.intake.handlers import Intake, handle_command

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
            filter_subject=self.subjects.inbox_all,
        )
        await self.js.add_consumer(INBOX_STREAM, config)
        self._sub = await self.js.pull_subscribe_bind(CONSUMER, stream=INBOX_STREAM)
        self._task = asyncio.create_task(self._run(), name="intake-inbox")

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
        ids = []
        keyed = []
        for msg in msgs:
            keys, command_id = _peek(msg)
            keyed.append((msg, keys))
            if command_id:
                ids.append(command_id)
        if ids:
            await self.intake.prefetch_processed(ids)
        await asyncio.gather(*(self._in_order(group) for group in _independent_groups(keyed)))

    async def _in_order(self, msgs: list[Msg]) -> None:
        for index, msg in enumerate(msgs):
            try:
                await self._one(msg)
            except Exception:  # redelivered later; the command id keeps that harmless
                log.exception("inbox.command_failed", subject=msg.subject)
                for later in msgs[index:]:
                    await later.nak(delay=self.retry_delay)
                return

    async def _one(self, msg: Msg) -> None:
        body = _with_command_id(msg)
        reply = await handle_command(self.intake, msg.subject, body, rate_limited=False)
        command_id = reply.command_id or _fallback_id(msg)
        await self.js.publish(
            self.subjects.result(command_id),
            reply.model_dump_json().encode(),
            headers={"Portfolio-Outcome": reply.status},
        )
        await msg.ack()


def _peek(msg: Msg) -> tuple[set[AggregateKey], str | None]:
    """The aggregates a raw command touches (its own and those its decision reads) and its
    command id, enough to order a batch. Unreadable input stands alone."""
    alone: set[AggregateKey] = {("_unreadable", str(msg.metadata.sequence.stream))}
    try:
        data = json.loads(msg.data)
    except (ValueError, RecursionError):
        return alone, None
    if not isinstance(data, dict):
        return alone, None
    command_id = data.get("command_id") or _fallback_id(msg)
    model = COMMANDS.get(msg.subject.rsplit(".", 1)[-1])
    try:
        command = model.model_validate(data) if model else None
    except ValidationError:
        command = None
    keys = {command.aggregate_key(), *command.references()} if command else alone
    return keys, command_id if isinstance(command_id, str) else None


def _independent_groups(keyed: list[tuple[Msg, set[AggregateKey]]]) -> list[list[Msg]]:
    """Split a batch so that commands touching a common aggregate (say, an objective and a
    proposal serving it) stay in arrival order, while unrelated ones can run at once."""
    parent = list(range(len(keyed)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[AggregateKey, int] = {}
    for index, (_, keys) in enumerate(keyed):
        for key in keys:
            if key in owner:
                parent[root(index)] = root(owner[key])
            else:
                owner[key] = index
    groups: dict[int, list[Msg]] = {}
    for index, (msg, _) in enumerate(keyed):
        groups.setdefault(root(index), []).append(msg)
    return list(groups.values())


def _with_command_id(msg: Msg) -> bytes:
    """A command sent without an id gets one that survives redelivery (never a fresh UUID,
    which would append it twice)."""
    try:
        data = json.loads(msg.data)
    except (ValueError, RecursionError):
        return bytes(msg.data)
    if not isinstance(data, dict) or "command_id" in data:
        return bytes(msg.data)
    data["command_id"] = _fallback_id(msg)
    return json.dumps(data).encode()


def _fallback_id(msg: Msg) -> str:
    """Where to answer input too broken to carry a command id: the sender's message id."""
    sent_id = (msg.headers or {}).get("Nats-Msg-Id")
    if sent_id and all(c.isalnum() or c in "_-:" for c in sent_id):
        return sent_id
    return f"inbox-{msg.metadata.sequence.stream}"
