"""Intake's command handler: parse, load, decide, append, reply.

Every refusal is answered with its reason and kept, raw, in the rejections stream.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from nats.js import JetStreamContext

from contracts.base import (
    AggregateKey,
    AppendedEvent,
    Command,
    CommandAccepted,
    CommandRejected,
    ErrorCode,
    ErrorInfo,
    FieldError,
    FrozenModel,
    RecordedEvent,
)
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from services.intake.aggregates import (
    AggregateStore,
    Loaded,
    fold,
    new_aggregate,
    reply_from_history,
)
from services.intake.command_ids import CommandIds
from services.intake.principals import address_of, bind
from shared.commands import InvalidInput, envelope_for, parse_command, trusted_constructor
from shared.eventlog import ConcurrencyConflict, LogUnavailable
from shared.logging import bind_message_context, clear_message_context
from shared.ratelimit import RateLimiter
from shared.rejections import keep_rejection, make_rejection
from shared.service import ServiceRuntime
from shared.settings import IntakeSettings

log = structlog.get_logger(__name__)

Reply = CommandAccepted | CommandRejected

#: `model_construct` of the answers built on every command's path (shared/commands.py).
_appended_event = trusted_constructor(AppendedEvent)
_accepted = trusted_constructor(CommandAccepted)


@dataclass(frozen=True)
class InFlight:
    """A command being decided: a second arrival of its id waits for its answer."""

    key: AggregateKey
    command: str
    answer: asyncio.Future[Reply]


@dataclass
class Intake:
    runtime: ServiceRuntime
    settings: IntakeSettings
    aggregates: AggregateStore
    js: JetStreamContext
    limiter: RateLimiter
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    #: Every command id in the log (command_ids.py), shared with intake's projection.
    command_ids: CommandIds = field(default_factory=CommandIds)


async def handle_command(intake: Intake, subject: str, body: bytes) -> Reply:
    """One request/reply command from the wire to its answer, rate limited per sender (the
    principal, else the source it names). The inbox is not limited: its durable stream
    already makes a flooding sender wait instead of crowding others out."""
    settings = intake.settings
    to = address_of(settings.subject_prefix, subject)
    name = to.command
    try:
        command = parse_command(name, body, settings.max_command_bytes)
        command = bind(command, to.principal, settings)
    except InvalidInput as invalid:
        error, command_id, actor = invalid.error, invalid.command_id, invalid.actor
        return await reject(intake, subject, body, error, name, command_id, actor)
    sender = to.principal or command.source
    if not intake.limiter.allow(sender):
        error = ErrorInfo(
            code=ErrorCode.RATE_LIMITED,
            message=(
                f"{sender!r} sends more than {settings.source_rate_per_second:g} commands/s; "
                "retry with the same command_id, or use the inbox"
            ),
        )
        return await reject(intake, subject, body, error, name, command.command_id, command.actor)
    try:
        return await handle_parsed(intake, subject, body, name, command)
    except LogUnavailable as unavailable:
        # Not kept as a rejection: nothing is wrong with the command, and the stream that
        # would keep it is as unavailable as the log. The sender tries again, same id.
        log.warning("command.unavailable", command=name, error=str(unavailable))
        return unavailable_reply(command.command_id, unavailable)


def unavailable_reply(command_id: str, unavailable: LogUnavailable) -> CommandRejected:
    return CommandRejected(
        command_id=command_id,
        error=ErrorInfo(
            code=ErrorCode.UNAVAILABLE,
            message=(
                f"the log did not answer for {unavailable.waited:.0f} s (a leader election, "
                "a restart): nothing was stored; send the same command, with the same "
                f"command_id, again in {unavailable.retry_after:g} s"
            ),
            retry_after_seconds=unavailable.retry_after,
        ),
    )


async def handle_parsed(
    intake: Intake, subject: str, body: bytes, name: str, command: Command
) -> Reply:
    """Decide and append a parsed command (the inbox parses a whole batch first). Raises
    `LogUnavailable` when the log does not answer within its patience (the inbox then
    redelivers; request/reply answers `unavailable`)."""
    bind_message_context(command.correlation_id or command.command_id, command.command_id)
    try:
        reply = await _accept(intake, command)
        if isinstance(reply, CommandRejected):
            return await reject(
                intake, subject, body, reply.error, name, command.command_id, command.actor
            )
        log.debug("command.accepted", command=name, duplicate=reply.duplicate)
        return reply
    finally:
        clear_message_context()


async def _accept(intake: Intake, command: Command) -> Reply:
    """Decide and append, once per command id even when the same id arrives twice at once:
    the second arrival waits for the first one's answer. An id already used, in the log or
    in flight, for another aggregate or another command is refused."""
    key, name = command.aggregate_key(), type(command).__name__
    running = intake.in_flight.get(command.command_id)
    if running is not None:
        first = await asyncio.shield(running.answer)
        if (running.key, running.command) != (key, name):
            return _reused(command, f"{running.command} on {running.key[0]}/{running.key[1]}")
        if isinstance(first, CommandAccepted):
            return first.model_copy(update={"duplicate": True})
        return first
    if not intake.command_ids.ready.is_set():
        await intake.command_ids.ready.wait()
    # Only an id the index knows is read back (a retry or a reuse, never a new command).
    known = intake.command_ids.first_position(command.command_id) is not None
    earlier = await _first_use(intake, command.command_id) if known else None
    if earlier is not None:
        e = earlier.envelope
        if (e.aggregate_type, e.aggregate_id) != key or e.command not in (None, name):
            return _reused(command, _use(earlier))
        return await _first_answer(intake, key, command.command_id)
    future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
    intake.in_flight[command.command_id] = InFlight(key, name, future)
    try:
        async with intake.aggregates.turn(key):
            reply = await _decide_and_append(intake, command)
        future.set_result(reply)
        return reply
    except BaseException as error:
        future.set_exception(error)
        future.exception()  # retrieved here, so an unawaited failure is not reported twice
        raise
    finally:
        del intake.in_flight[command.command_id]


async def _first_use(intake: Intake, command_id: str) -> RecordedEvent | None:
    """The first event of an earlier command with this id, read back from the log (only for
    an id the index knows: a retry or a reuse, never a new command)."""
    position = intake.command_ids.first_position(command_id)
    if position is None:
        return None
    found = await intake.runtime.log.get(position)
    return found if found.envelope.causation_id == command_id else None  # a hash collision


def _use(recorded: RecordedEvent) -> str:
    e = recorded.envelope
    by = e.command or f"the command that caused {e.event_type}"
    return f"{by} on {e.aggregate_type}/{e.aggregate_id} (position {recorded.position})"


def _reused(command: Command, first_use: str) -> CommandRejected:
    message = (
        f"command id {command.command_id!r} was already used by {first_use}: a command id "
        "names one command; send a new command with a new id"
    )
    return CommandRejected(
        command_id=command.command_id,
        error=ErrorInfo(
            code=ErrorCode.CONFLICT,
            message=message,
            details=(FieldError(field="command_id", message=message, input=command.command_id),),
        ),
    )


async def _decide_and_append(intake: Intake, command: Command) -> Reply:
    key = command.aggregate_key()
    references = command.references()
    refs = (
        {ref: (await intake.aggregates.load(ref)).state for ref in references} if references else {}
    )
    # On a cache miss, first guess that the aggregate is new: if the command creates it, the
    # append's expected position 0 checks that guess on the server, saving a read of the log.
    loaded = intake.aggregates.cached(key)
    guessing = loaded is None and command.expected_version is None
    if loaded is None:
        loaded = new_aggregate() if guessing else await intake.aggregates.load(key)
    conflicts = 0
    while conflicts < intake.settings.conflict_retries:
        if command.command_id in loaded.commands:
            return await _first_answer(intake, key, command.command_id)
        if command.expected_version is not None and command.expected_version != loaded.version:
            return _conflict(command, loaded.version)
        now = datetime.now(UTC)
        try:
            events = decide(command, loaded.state, now, refs)
        except Rejected as refused:
            if guessing:
                guessing, loaded = False, await intake.aggregates.load(key)
                continue
            return CommandRejected(
                command_id=command.command_id,
                error=ErrorInfo(
                    code=refused.code, message=refused.message, details=refused.details
                ),
            )
        try:
            reply = await _append(intake, command, key, loaded, events, now)
        except ConcurrencyConflict:
            guessing, conflicts = False, conflicts + (0 if guessing else 1)
            if conflicts > 1:  # another writer is in a burst (a service's decisions): let it
                await asyncio.sleep(random.uniform(0, 0.002 * 2**conflicts))
            loaded, since = await intake.aggregates.catch_up(key, loaded)
            first_version = loaded.version - len(since) + 1
            landed = reply_from_history(since, command.command_id, first_version)
            if landed is not None:
                return landed
            continue
        return reply
    return _conflict(command, loaded.version)


async def _first_answer(intake: Intake, key: tuple[str, str], command_id: str) -> CommandAccepted:
    """A repeated command gets the answer it got the first time, rebuilt from the log (rare,
    so the cache keeps command ids only, not whole answers)."""
    history = await intake.aggregates.history(key)
    intake.aggregates.advance(key, fold(history))
    landed = reply_from_history(history, command_id)
    return landed or CommandAccepted(command_id=command_id, events=(), duplicate=True)


async def _append(
    intake: Intake,
    command: Command,
    key: tuple[str, str],
    loaded: Loaded,
    events: list[FrozenModel],
    now: datetime,
) -> Reply:
    appended: list[AppendedEvent] = []
    state, version, last = loaded.state, loaded.version, loaded.last_position
    link = loaded.last_link
    name = type(command).__name__
    for index, event in enumerate(events):
        envelope = envelope_for(command, event, key, index, now, name)
        result = await intake.runtime.log.append(
            envelope, expected_last_position=last, previous_link=link
        )
        if result.duplicate:
            # The stream already holds this event id: our own earlier attempt, or the same
            # command id used elsewhere inside the duplicate window. Never "accepted" unless
            # the events are ours and in the log.
            intake.aggregates.forget(key)
            history = await intake.aggregates.history(key)
            landed = reply_from_history(history, command.command_id)
            if landed is not None:
                return landed
            return _reused(command, _use(await intake.runtime.log.get(result.position)))
        state, version, last = evolve(state, event), version + 1, result.position
        link = result.link
        appended.append(  # from values already checked: not validated again (hot path)
            _appended_event(
                event_id=envelope.event_id,
                event_type=envelope.event_type,
                aggregate_type=key[0],
                aggregate_id=key[1],
                position=result.position,
                version=version,
            )
        )
    loaded.commands.add(command.command_id)  # in the log now, whichever Loaded it is
    if appended:
        intake.command_ids.add(command.command_id, appended[0].position)
    intake.aggregates.advance(key, Loaded(state, version, last, loaded.commands, link))
    return _accepted(command_id=command.command_id, events=tuple(appended))


def _conflict(command: Command, actual_version: int) -> CommandRejected:
    return CommandRejected(
        command_id=command.command_id,
        error=ErrorInfo(
            code=ErrorCode.CONFLICT,
            message=(
                f"the aggregate is at version {actual_version}, "
                f"not {command.expected_version}: reload and decide again"
                if command.expected_version is not None
                else "the aggregate kept changing while deciding; try again"
            ),
        ),
    )


async def reject(
    intake: Intake,
    subject: str,
    body: bytes,
    error: ErrorInfo,
    command_type: str | None,
    command_id: str | None,
    actor: str | None,
) -> CommandRejected:
    rejection = make_rejection(
        subject,
        body,
        error,
        command_type,
        command_id,
        actor,
        intake.settings.rejection_raw_limit_bytes,
    )
    await keep_rejection(intake.js, intake.settings.subjects, rejection)
    log.info("command.rejected", command=command_type, code=error.code, reason=error.message)
    return CommandRejected(command_id=command_id, error=error)
