"""The durable inbox: commands published fire-and-forget to `portfolio.inbox.<Command>`.

A batch is parsed once and split by aggregate: one aggregate's commands run in the order
they arrived, different aggregates run at once, so a batch's appends are in flight
together. A message is acknowledged only after its outcome is stored, so an intake crash
means redelivery, and the command id makes that harmless.

One outcome per message, whatever it holds (the inbox's promise):

- **Where the outcome goes.** `portfolio.results.<outcome id>`: the command id when it is a
  valid subject token (the contract's `[A-Za-z0-9_:-]{1,128}`), else the sender's
  `Nats-Msg-Id` when that is one, else `inbox-<stream sequence>` (the sequence the sender's
  publish ack returned). Nothing from a message reaches a subject unchecked.
- **Refused input** (unreadable, invalid, unknown command, forbidden actor, refused by the
  rules) is answered `rejected` and kept in the rejections stream with its raw bytes and
  the reason.
- **Isolation.** An error while processing one message costs that message (and the later
  messages of its aggregate in the batch, which wait so as to keep their order) a
  redelivery with back-off, never the loop. After `PORTFOLIO_INBOX_MAX_DELIVERIES` failed
  attempts of its own, or when it has been delivered four times that often whatever the
  cause (a message that takes intake down with it), it becomes a **dead letter**: answered
  `rejected` (code `internal`, the last error in the message), kept in rejections, and
  removed from the inbox.
- **Health.** `status()` reports the consumer's figures and the loop's last error; intake
  reads `degraded` while the loop is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind

from contracts.base import AggregateKey, Command, CommandRejected, ErrorCode, ErrorInfo
from contracts.queries import InboxStatus
from contracts.subjects import INBOX_STREAM
from services.intake.handlers import Intake, Reply, handle_parsed
from services.intake.principals import address_of, bind
from shared import metrics, tracing
from shared.commands import InvalidInput, parse_command, printable
from shared.eventlog import inbox_stream_config
from shared.pull import BatchPuller
from shared.rejections import keep_rejection, make_rejection

log = structlog.get_logger(__name__)

CONSUMER = "intake-inbox"
#: What may stand in a result subject (the contract's command id pattern).
SAFE_ID = re.compile(r"^[A-Za-z0-9_\-:]{1,128}$")
#: Rejection ids of inbox messages derive from their position: a redelivered refusal (say,
#: its outcome could not be stored) is kept once, not twice.
REJECTION_NAMESPACE = uuid.UUID("0b6f3f7e-2d7c-4c8e-9a0e-7f1d2c3b4a59")
#: Delivered this many times `max_deliveries`, a message is a dead letter whatever the cause.
CRASH_FACTOR = 4
MAX_BACKOFF_SECONDS = 30.0


class InboxWorker:
    def __init__(self, intake: Intake, js: JetStreamContext) -> None:
        self.intake = intake
        self.js = js
        settings = intake.settings
        self.subjects = settings.subjects
        self.batch_size = settings.inbox_batch_size
        self.retry_delay = settings.projection_retry_delay_seconds
        self.max_deliveries = max(1, settings.inbox_max_deliveries)
        self._task: asyncio.Task[None] | None = None
        self._sub: BatchPuller | None = None
        self._stopping = False
        #: Failed attempts of a message's own, by inbox position (cleared once answered).
        self._failures: dict[int, int] = {}
        self._last_failure: dict[int, str] = {}
        self.answered = 0
        self.dead_letters = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

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
        # One subscription callback, no task per message; the next batch streams in while
        # one is answered (max_ack_pending allows four batches unacknowledged).
        self._sub = await BatchPuller(self.js, INBOX_STREAM, CONSUMER).start()
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
            # What the puller holds or is still owed (at most the next batch) comes back
            # after `ack_wait`, as do the messages of a batch the stop interrupted.
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def status(self) -> InboxStatus:
        pending = waiting = redelivered = None
        try:
            info = await self.js.consumer_info(INBOX_STREAM, CONSUMER)
            pending, waiting = info.num_pending, info.num_ack_pending
            redelivered = info.num_redelivered
        except Exception as error:  # noqa: BLE001 - the figures are missing, not the answer
            log.warning("inbox.consumer_info_failed", error=repr(error))
        return InboxStatus(
            running=self.running,
            pending=pending,
            waiting_for_ack=waiting,
            redelivered=redelivered,
            answered_since_start=self.answered,
            dead_letters_since_start=self.dead_letters,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )

    def _failed(self, what: str, error: BaseException) -> str:
        reason = printable(f"{what}: {type(error).__name__}: {error}")[:500]
        self.last_error, self.last_error_at = reason, datetime.now(UTC)
        return reason

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
            except Exception as error:  # the loop must outlive any failure (logged)
                log.exception("inbox.fetch_failed")
                self._failed("fetch", error)
                await asyncio.sleep(self.retry_delay)
                continue
            try:
                await self.process(msgs)
            except Exception as error:  # a bug: unanswered messages come back after ack_wait
                log.exception("inbox.batch_failed", size=len(msgs))
                self._failed("batch", error)

    async def process(self, msgs: list[Msg]) -> None:
        inbound = [self._parse(msg) for msg in msgs]
        groups = _independent_groups(inbound)
        answered = await asyncio.gather(*(self._in_order(group) for group in groups))
        await self._record([pair for group in answered for pair in group])

    def _parse(self, msg: Msg) -> Inbound:
        """Never raises: whatever the message holds becomes a command, a refusal, or a
        failure to retry."""
        settings = self.intake.settings
        to = address_of(settings.subject_prefix, msg.subject)
        name = to.command
        try:
            command = parse_command(to.command, msg.data, settings.max_command_bytes)
            if "command_id" not in command.model_fields_set:
                # An id that survives redelivery (never a fresh UUID: it would append twice).
                command = command.model_copy(update={"command_id": outcome_id(msg, None)})
            command = bind(command, to.principal, settings)
        except InvalidInput as invalid:
            return Inbound(msg, name, invalid)
        except Exception as error:  # a bug in parsing: retried, then a dead letter
            log.exception("inbox.parse_failed", subject=msg.subject)
            return Inbound(msg, name, Failed(self._failed("parse", error)))
        return Inbound(msg, name, command)

    async def _in_order(self, group: list[Inbound]) -> list[tuple[Msg, Reply]]:
        """Never raises. A failure holds back the rest of its group (their order matters)."""
        answered: list[tuple[Msg, Reply]] = []
        for index, item in enumerate(group):
            try:
                answered.append((item.msg, await self._answer(item)))
            except Exception as error:  # redelivered later; the command id keeps that harmless
                log.exception("inbox.command_failed", subject=item.msg.subject)
                failures = self._note_failure(item.msg, self._failed("command", error))
                await self._nak(item.msg, failures)
                for later in group[index + 1 :]:
                    await self._nak(later.msg, 1)
                break
        return answered

    def _note_failure(self, msg: Msg, reason: str) -> int:
        seq = _position(msg)
        self._failures[seq] = self._failures.get(seq, 0) + 1
        self._last_failure[seq] = reason
        return self._failures[seq]

    async def _nak(self, msg: Msg, failures: int) -> None:
        delay = min(MAX_BACKOFF_SECONDS, self.retry_delay * 2 ** max(0, failures - 1))
        try:
            await msg.nak(delay=delay)
        except Exception as error:  # noqa: BLE001 - redelivered after ack_wait anyway
            log.warning("inbox.nak_failed", error=repr(error))

    def _dead(self, item: Inbound) -> str | None:
        """Why this message is a dead letter, or None while it deserves another try."""
        seq = _position(item.msg)
        own = self._failures.get(seq, 0)
        delivered = _deliveries(item.msg)
        if own >= self.max_deliveries:
            return f"{own} failed attempts; last: {self._last_failure.get(seq, 'unknown')}"
        if delivered > self.max_deliveries * CRASH_FACTOR:
            return f"delivered {delivered} times without an outcome"
        return None

    async def _answer(self, item: Inbound) -> Reply:
        msg, parsed = item.msg, item.parsed
        dead = self._dead(item)
        if dead is not None:
            self.dead_letters += 1
            metrics.INBOX_DEAD_LETTERS.inc()
            log.error("inbox.dead_letter", subject=msg.subject, seq=_position(msg), reason=dead)
            error = ErrorInfo(
                code=ErrorCode.INTERNAL,
                message=f"dead letter: not processed ({dead}); kept in rejections",
            )
            return await self._refuse(item, error, None)
        if isinstance(parsed, Failed):
            raise RuntimeError(parsed.reason)
        if isinstance(parsed, InvalidInput):
            return await self._refuse(item, parsed.error, parsed)
        # In the sender's trace (its `traceparent` header); a no-op when tracing is off.
        with tracing.span("intake inbox command", msg.headers, SpanKind.CONSUMER):
            return await handle_parsed(self.intake, msg.subject, msg.data, item.name, parsed)

    async def _refuse(
        self, item: Inbound, error: ErrorInfo, invalid: InvalidInput | None
    ) -> CommandRejected:
        """Answer a message that is not processed, under its outcome id, and keep it."""
        msg = item.msg
        claimed = invalid.command_id if invalid is not None else _claimed_id(msg.data)
        command_id = outcome_id(msg, claimed)
        rejection = make_rejection(
            msg.subject,
            msg.data,
            error,
            item.name or None,
            command_id,
            invalid.actor if invalid is not None else None,
            self.intake.settings.rejection_raw_limit_bytes,
        ).model_copy(update={"rejection_id": _rejection_id(msg)})
        await keep_rejection(self.js, self.subjects, rejection)
        log.info("command.rejected", command=item.name, code=error.code, reason=error.message)
        return CommandRejected(command_id=command_id, error=error)

    async def _record(self, answered: list[tuple[Msg, Reply]]) -> None:
        """Publish a batch's outcomes at once, then acknowledge each one that was stored.
        Never raises: an outcome that cannot be stored means a redelivery."""
        stored: list[tuple[Msg, asyncio.Future[Any], str]] = []
        acks = self.intake.runtime.log.acks
        for msg, reply in answered:
            subject = self.subjects.result(outcome_id(msg, reply.command_id))
            data = reply.model_dump_json().encode()
            headers: dict[str, str] = {"Portfolio-Outcome": reply.status}
            try:
                future: asyncio.Future[Any]
                if acks is not None:  # the log's own ack subscription (shared/eventlog.py)
                    future = await acks.send(subject, data, headers)
                else:
                    future = await self.js.publish_async(subject, data, headers=headers)
            except Exception as error:
                log.exception("inbox.result_not_published", subject=msg.subject)
                self._failed("result", error)
                await self._nak(msg, self._note_failure(msg, self.last_error or "result"))
                continue
            stored.append((msg, future, metrics.outcome(reply)))
        if stored:
            futures = [future for _, future, _ in stored]
            await asyncio.wait(futures, timeout=self.intake.settings.request_timeout_seconds)
        for msg, future, outcome in stored:
            if future.done() and not future.cancelled() and future.exception() is None:
                try:
                    await msg.ack()
                except Exception as error:  # noqa: BLE001 - answered again on redelivery
                    self._failed("ack", error)
                    continue
                self.answered += 1
                metrics.count_command("inbox", outcome)
                self._failures.pop(_position(msg), None)
                self._last_failure.pop(_position(msg), None)
                continue
            future.cancel()
            log.warning("inbox.result_not_stored", subject=msg.subject)
            await self._nak(msg, self._note_failure(msg, "the outcome was not stored"))


@dataclass(frozen=True)
class Failed:
    """A message that could not be processed this time, for a reason not its sender's."""

    reason: str


@dataclass(frozen=True)
class Inbound:
    msg: Msg
    name: str
    parsed: Command | InvalidInput | Failed

    def touches(self) -> set[AggregateKey]:
        """The aggregates a command touches (its own and those its decision reads), enough
        to order a batch. Unreadable input stands alone."""
        if not isinstance(self.parsed, Command):
            return {("_unreadable", str(_position(self.msg)))}
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


def outcome_id(msg: Msg, command_id: str | None) -> str:
    """The id a message's outcome is filed under: its command id if that is a valid subject
    token, else the sender's `Nats-Msg-Id` if that is one, else `inbox-<stream sequence>`.
    Stable across redeliveries; never anything that could break or widen a subject."""
    if command_id is not None and SAFE_ID.match(command_id):
        return command_id
    sent_id = (msg.headers or {}).get("Nats-Msg-Id")
    if sent_id and SAFE_ID.match(sent_id):
        return sent_id
    return f"inbox-{_position(msg)}"


def _claimed_id(body: bytes) -> str | None:
    """The command id a body claims, read without trusting it (for a dead letter)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    claimed = data.get("command_id") if isinstance(data, dict) else None
    return claimed if isinstance(claimed, str) else None


def _position(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


def _deliveries(msg: Msg) -> int:
    return int(msg.metadata.num_delivered or 1)


def _rejection_id(msg: Msg) -> str:
    return str(uuid.uuid5(REJECTION_NAMESPACE, f"{msg.subject}/{_position(msg)}"))
