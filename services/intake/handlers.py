"""Intake's command handler: parse, load, decide, append, reply.

Every refusal is answered with its reason and kept, raw, in the rejections stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from nats.js import JetStreamContext

from contracts.base import (
    AppendedEvent,
    Command,
    CommandAccepted,
    CommandRejected,
    ErrorCode,
    ErrorInfo,
    FrozenModel,
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
from services.intake.principals import address_of, bind
from shared.commands import InvalidInput, envelope_for, parse_command
from shared.eventlog import ConcurrencyConflict
from shared.logging import bind_message_context, clear_message_context
from shared.ratelimit import RateLimiter
from shared.rejections import keep_rejection, make_rejection
from shared.service import ServiceRuntime
from shared.settings import IntakeSettings

log = structlog.get_logger(__name__)

Reply = CommandAccepted | CommandRejected


@dataclass
class Intake:
    runtime: ServiceRuntime
    settings: IntakeSettings
    aggregates: AggregateStore
    js: JetStreamContext
    limiter: RateLimiter
    in_flight: dict[str, asyncio.Future[Reply]] = field(default_factory=dict)


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
    return await handle_parsed(intake, subject, body, name, command)


async def handle_parsed(
    intake: Intake, subject: str, body: bytes, name: str, command: Command
) -> Reply:
    """Decide and append a parsed command (the inbox parses a whole batch first)."""
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
    the second arrival waits for the first one's answer."""
    running = intake.in_flight.get(command.command_id)
    if running is not None:
        first = await asyncio.shield(running)
        if isinstance(first, CommandAccepted):
            return first.model_copy(update={"duplicate": True})
        return first
    future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
    intake.in_flight[command.command_id] = future
    try:
        reply = await _decide_and_append(intake, command)
        future.set_result(reply)
        return reply
    except BaseException as error:
        future.set_exception(error)
        future.exception()  # retrieved here, so an unawaited failure is not reported twice
        raise
    finally:
        del intake.in_flight[command.command_id]


async def _decide_and_append(intake: Intake, command: Command) -> Reply:
    key = command.aggregate_key()
    refs = {ref: (await intake.aggregates.load(ref)).state for ref in command.references()}
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
            history = await intake.aggregates.history(key)
            landed = reply_from_history(history, command.command_id)
            if landed is not None:
                return landed
            loaded = fold(history)
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
) -> CommandAccepted:
    appended: list[AppendedEvent] = []
    state, version, last = loaded.state, loaded.version, loaded.last_position
    for index, event in enumerate(events):
        envelope = envelope_for(command, event, key, index, now)
        result = await intake.runtime.log.append(envelope, expected_last_position=last)
        if result.duplicate:
            intake.aggregates.forget(key)
            history = await intake.aggregates.history(key)
            landed = reply_from_history(history, command.command_id)
            if landed is not None:
                return landed
        state, version, last = evolve(state, event), version + 1, result.position
        appended.append(  # from values already checked: not validated again (hot path)
            AppendedEvent.model_construct(
                event_id=envelope.event_id,
                event_type=envelope.event_type,
                aggregate_type=key[0],
                aggregate_id=key[1],
                position=result.position,
                version=version,
            )
        )
    loaded.commands.add(command.command_id)  # in the log now, whichever Loaded it is
    intake.aggregates.advance(key, Loaded(state, version, last, loaded.commands))
    return CommandAccepted.model_construct(command_id=command.command_id, events=tuple(appended))


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
