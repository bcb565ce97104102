"""A command id names one command, across the whole log: reused for another aggregate or
another command it is refused (`conflict`, naming its first use), inside the stream's
duplicate window, past it, and after a restart; and an `accepted` answer always means the
events are in the log at the positions it names."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from shared.eventlog import EventLog
from tests.integration.helpers import proposal, running, send

SHORT_WINDOW = {"duplicate_window_seconds": 0.5}


async def assert_in_the_log(log: EventLog, reply: CommandAccepted) -> None:
    """Every event the answer names is in the log at that position: same id, aggregate and
    the answer's command as its cause."""
    assert reply.events, reply
    for event in reply.events:
        stored = await log.get(event.position)
        e = stored.envelope
        assert (e.event_id, e.event_type) == (event.event_id, event.event_type)
        assert (e.aggregate_type, e.aggregate_id) == (event.aggregate_type, event.aggregate_id)
        assert e.causation_id == reply.command_id


def refused_as_reused(reply: Any, first_use: str) -> None:
    assert isinstance(reply, CommandRejected), reply
    assert reply.error.code == ErrorCode.CONFLICT
    assert "was already used by" in reply.error.message and first_use in reply.error.message
    assert reply.error.details[0].field == "command_id"


async def test_an_id_reused_for_another_aggregate_or_command_is_refused(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    answers: list[Any] = []
    async with running(nc, "intake", nats_url, tmp_path, **SHORT_WINDOW):
        first = await send(nc, "ProposeProject", proposal("P-A", command_id="same"))
        assert isinstance(first, CommandAccepted)
        answers.append(first)
        # Inside the duplicate window: the event id derived from the command id is the one
        # already stored, and the stream would take it for a duplicate.
        other_aggregate = await send(nc, "ProposeProject", proposal("P-B", command_id="same"))
        refused_as_reused(other_aggregate, "ProposeProject on project/P-A (position 1)")
        other_command = await send(
            nc, "SubmitProjectForReview", {"project_id": "P-A", "command_id": "same"}
        )
        refused_as_reused(other_command, "ProposeProject on project/P-A (position 1)")
        await asyncio.sleep(1.0)  # past the stream's duplicate window
        late = await send(nc, "ProposeProject", proposal("P-C", command_id="same"))
        refused_as_reused(late, "ProposeProject on project/P-A")
        repeat = await send(nc, "ProposeProject", proposal("P-A", command_id="same"))
        assert isinstance(repeat, CommandAccepted) and repeat.duplicate
        assert repeat.events == first.events
        answers.append(repeat)
    # After a restart: the index comes back from intake's projection.
    async with running(nc, "intake", nats_url, tmp_path, **SHORT_WINDOW):
        restarted = await send(nc, "ProposeProject", proposal("P-D", command_id="same"))
        refused_as_reused(restarted, "ProposeProject on project/P-A")
        fresh = await send(nc, "ProposeProject", proposal("P-D", command_id="other"))
        assert isinstance(fresh, CommandAccepted) and not fresh.duplicate
        answers.append(fresh)
    assert await event_log.last_position() == 2  # P-A and P-D, nothing else
    for answer in answers:
        await assert_in_the_log(event_log, answer)


async def test_two_arrivals_of_one_id_for_two_aggregates(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """At the same moment: one is decided, the other refused, whichever came first."""
    async with running(nc, "intake", nats_url, tmp_path):
        replies = await asyncio.gather(
            *(send(nc, "ProposeProject", proposal(f"P-{n}", command_id="twin")) for n in range(6))
        )
    accepted = [r for r in replies if isinstance(r, CommandAccepted)]
    assert len(accepted) == 1 and not accepted[0].duplicate
    for reply in replies:
        if reply is not accepted[0]:
            refused_as_reused(reply, "ProposeProject on project/")
    assert await event_log.last_position() == 1
    await assert_in_the_log(event_log, accepted[0])


async def test_every_accepted_answer_is_in_the_log(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """Many commands, repeats and reuses at once, through request/reply: each accepted
    answer (first or duplicate) is checked against the log by fetching its positions."""
    bodies: list[tuple[str, dict[str, Any]]] = []
    for n in range(40):
        bodies.append(("ProposeProject", proposal(f"P-{n}", command_id=f"c-{n}")))
        bodies.append(("ProposeProject", proposal(f"P-{n}", command_id=f"c-{n}")))  # repeat
        bodies.append(("ProposeProject", proposal(f"Q-{n}", command_id=f"c-{n}")))  # reuse
        bodies.append(("SubmitProjectForReview", {"project_id": f"P-{n}", "command_id": f"s-{n}"}))
    async with running(nc, "intake", nats_url, tmp_path):
        replies = await asyncio.gather(*(send(nc, name, body) for name, body in bodies))
    accepted = [r for r in replies if isinstance(r, CommandAccepted)]
    for landed in accepted:
        await assert_in_the_log(event_log, landed)
    stored = [e async for e in event_log.read()]
    assert not [e for e in stored if e.envelope.aggregate_id.startswith("Q-")]
    causes = [e.envelope.causation_id for e in stored]
    assert len(causes) == len(set(causes))  # one event per command here, none twice
    for reply in replies:
        if isinstance(reply, CommandRejected):
            # A reuse, or a submission decided before its proposal landed.
            assert reply.error.code in (ErrorCode.CONFLICT, ErrorCode.NOT_FOUND), reply
    assert json.dumps(sorted({e.envelope.command or "" for e in stored})) == json.dumps(
        ["ProposeProject", "SubmitProjectForReview"]
    )
