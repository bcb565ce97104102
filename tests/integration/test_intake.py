"""Intake through a real nats-server and SQLite: answers, idempotency, conflicts, rejections."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from shared.eventlog import ConcurrencyConflict, EventLog
from shared.rejections import read_rejections
from tests.integration.helpers import SUBJECTS, proposal, running, send


async def test_lifecycle_through_nats(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with running(nc, "intake", nats_url, tmp_path):
        steps = [
            ("ProposeProject", proposal("P-1")),
            ("SubmitProjectForReview", {"project_id": "P-1"}),
            ("ApproveProject", {"project_id": "P-1", "rationale": "fits the cloud strategy"}),
            ("StartProject", {"project_id": "P-1"}),
            ("PutProjectOnHold", {"project_id": "P-1", "reason": "vendor delay"}),
            ("ResumeProject", {"project_id": "P-1"}),
            ("CompleteProject", {"project_id": "P-1"}),
        ]
        for version, (command, body) in enumerate(steps, start=1):
            reply = await send(nc, command, body)
            assert isinstance(reply, CommandAccepted), reply
            assert reply.events[0].version == version
            assert reply.events[0].position == version
        history = await event_log.read_aggregate("project", "P-1")
        assert history[-2].envelope.payload["resumed_to"] == "in_progress"
        assert history[0].envelope.actor == "alice" and history[0].envelope.source == "tests"


async def test_same_command_id_appends_once_and_answers_the_same(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    body = proposal("P-1", command_id="import-row-1")
    async with running(nc, "intake", nats_url, tmp_path):
        first, second = await asyncio.gather(
            send(nc, "ProposeProject", body), send(nc, "ProposeProject", body)
        )
        assert isinstance(first, CommandAccepted) and isinstance(second, CommandAccepted)
        assert first.events == second.events
        assert [first.duplicate, second.duplicate].count(True) == 1
    assert await event_log.last_position() == 1


async def test_idempotency_outlives_the_duplicate_window_and_a_restart(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    body = proposal("P-1", command_id="cmd-1")
    # Legal again and again, so only its command id can tell a repeat from a new estimate.
    estimate = {"project_id": "P-1", "capex": "900", "opex": "0", "reason": "new quote"}
    estimate |= {"command_id": "cmd-2"}
    short_window = {"duplicate_window_seconds": 0.5}
    async with running(nc, "intake", nats_url, tmp_path, **short_window):
        original = await send(nc, "ProposeProject", body)
        updated = await send(nc, "UpdateProjectEstimate", estimate)
        assert isinstance(original, CommandAccepted) and isinstance(updated, CommandAccepted)
        await asyncio.sleep(1.0)  # past the stream's duplicate window
        again = await send(nc, "UpdateProjectEstimate", estimate)
        assert isinstance(again, CommandAccepted) and again.duplicate
        assert again.events == updated.events
    # A new intake process: no memory of the commands except what the log holds.
    async with running(nc, "intake", nats_url, tmp_path, **short_window):
        repeat = await send(nc, "ProposeProject", body)
        repeat_estimate = await send(nc, "UpdateProjectEstimate", estimate)
    assert isinstance(repeat, CommandAccepted) and repeat.duplicate
    assert repeat.events == original.events
    assert isinstance(repeat_estimate, CommandAccepted) and repeat_estimate.duplicate
    assert repeat_estimate.events == updated.events
    assert await EventLog(nc.jetstream(), SUBJECTS).last_position() == 2


async def test_a_burst_for_one_aggregate_is_all_accepted_in_some_order(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """An import pipelines rows: many commands for one project arrive at once. None may be
    refused as a conflict (no other writer exists), and each lands exactly once."""
    capexes = [str(1000 + n) for n in range(48)]
    async with running(nc, "intake", nats_url, tmp_path):
        await send(nc, "ProposeProject", proposal("P-1"))
        replies = await asyncio.gather(
            *(
                send(
                    nc,
                    "UpdateProjectEstimate",
                    {"project_id": "P-1", "capex": capex, "opex": "0", "reason": "quote"},
                )
                for capex in capexes
            )
        )
    refused = [r for r in replies if not isinstance(r, CommandAccepted)]
    assert not refused, refused[:3]
    versions = sorted(e.version for r in replies for e in r.events)  # type: ignore[union-attr]
    assert versions == list(range(2, 2 + len(capexes)))
    history = await event_log.read_aggregate("project", "P-1")
    landed = sorted(Decimal(str(r.envelope.payload["capex"])) for r in history[1:])
    assert landed == sorted(Decimal(capex) for capex in capexes)


@pytest.mark.parametrize(("rival_wins", "accepted_in_the_end"), [(5, True), (12, False)])
async def test_another_writer_in_a_burst_is_waited_out_then_refused(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
    rival_wins: int,
    accepted_in_the_end: bool,
) -> None:
    """A service appending its decisions to the aggregate (the ledger's thresholds on a
    pool) wins the append's check again and again: intake decides again, backing off, up to
    its retries; beyond them the sender gets `conflict`, kept with its reason."""
    original = EventLog.append
    rivals: list[Any] = []

    async def contested(
        self: EventLog, envelope: Any, expected_last_position: int, previous_link: Any = None
    ) -> Any:
        if envelope.event_type == "ProjectEstimateUpdated" and len(rivals) < rival_wins:
            rival = envelope.model_copy(
                update={"event_id": str(uuid.uuid4()), "causation_id": f"rival-{len(rivals)}"}
            )
            end = await self.last_position_of("project", "P-1")
            rivals.append(await original(self, rival, expected_last_position=end))
        return await original(self, envelope, expected_last_position, previous_link)

    async with running(nc, "intake", nats_url, tmp_path):
        await send(nc, "ProposeProject", proposal("P-1"))
        monkeypatch.setattr(EventLog, "append", contested)
        body = {"project_id": "P-1", "capex": "900", "opex": "0", "reason": "new quote"}
        reply = await send(nc, "UpdateProjectEstimate", body | {"command_id": "contested"})
    history = await event_log.read_aggregate("project", "P-1")
    ours = [e for e in history if e.envelope.causation_id == "contested"]
    if accepted_in_the_end:
        assert isinstance(reply, CommandAccepted), reply
        assert len(ours) == 1 and len(rivals) == rival_wins
        assert reply.events[0].position == ours[0].position
    else:
        assert isinstance(reply, CommandRejected) and reply.error.code == ErrorCode.CONFLICT
        assert "kept changing" in reply.error.message and not ours
        kept = [k async for k in read_rejections(nc.jetstream(), SUBJECTS)]
        assert [k.command_id for k in kept] == ["contested"]
        assert "kept changing" in kept[0].error.message
    assert len(history) == 1 + len(rivals) + len(ours)


async def test_a_conflict_reads_only_what_another_writer_appended(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Losing the append's check to another writer, intake folds that writer's event onto
    what it had, instead of the aggregate's whole history again; the versions it answers
    with and decides on are still the log's."""
    original_append, original_read = EventLog.append, EventLog.read_aggregate
    rivals: list[Any] = []
    reads: list[tuple[int, int]] = []

    async def contested(
        self: EventLog, envelope: Any, expected_last_position: int, previous_link: Any = None
    ) -> Any:
        if envelope.causation_id == "contested" and not rivals:
            rival = envelope.model_copy(
                update={"event_id": str(uuid.uuid4()), "causation_id": "rival"}
            )
            end = await self.last_position_of("project", "P-1")
            rivals.append(await original_append(self, rival, expected_last_position=end))
        return await original_append(self, envelope, expected_last_position, previous_link)

    async def counted(self: EventLog, kind: str, key: str, after: int = 0) -> Any:
        found = await original_read(self, kind, key, after)
        reads.append((after, len(found)))
        return found

    body = {"project_id": "P-1", "opex": "0", "reason": "new quote"}
    async with running(nc, "intake", nats_url, tmp_path):
        await send(nc, "ProposeProject", proposal("P-1"))
        for capex in range(1000, 1030):
            assert isinstance(
                await send(nc, "UpdateProjectEstimate", body | {"capex": capex}), CommandAccepted
            )
        before = await event_log.read_aggregate("project", "P-1")
        monkeypatch.setattr(EventLog, "append", contested)
        monkeypatch.setattr(EventLog, "read_aggregate", counted)
        reply = await send(
            nc, "UpdateProjectEstimate", body | {"capex": 5, "command_id": "contested"}
        )
        monkeypatch.setattr(EventLog, "read_aggregate", original_read)
        assert isinstance(reply, CommandAccepted), reply
        # What intake now knows is the log's: a command expecting the next version passes.
        follow = body | {"capex": 6, "expected_version": len(before) + 2}
        assert isinstance(await send(nc, "UpdateProjectEstimate", follow), CommandAccepted)
    assert reads == [(before[-1].position, 1)]  # the rival's event alone, once
    history = await event_log.read_aggregate("project", "P-1")
    (ours,) = [e for e in history if e.envelope.causation_id == "contested"]
    assert (reply.events[0].position, reply.events[0].version) == (ours.position, len(before) + 2)
    assert [e.envelope.causation_id for e in history[len(before) :]][:2] == ["rival", "contested"]


async def test_a_command_whose_append_landed_unseen_gets_the_logs_versions(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The append landed but intake was told of a conflict (an answer lost, the retry
    refused): catching up, it finds its own event and answers with the log's version."""
    original = EventLog.append

    async def lost(
        self: EventLog, envelope: Any, expected_last_position: int, previous_link: Any = None
    ) -> Any:
        result = await original(self, envelope, expected_last_position, previous_link)
        if envelope.causation_id == "unseen":
            raise ConcurrencyConflict("P-1", expected_last_position, "the answer was lost")
        return result

    body = {"project_id": "P-1", "opex": "0", "reason": "new quote"}
    async with running(nc, "intake", nats_url, tmp_path):
        await send(nc, "ProposeProject", proposal("P-1"))
        for capex in (1000, 1001, 1002):
            await send(nc, "UpdateProjectEstimate", body | {"capex": capex})
        monkeypatch.setattr(EventLog, "append", lost)
        reply = await send(nc, "UpdateProjectEstimate", body | {"capex": 7, "command_id": "unseen"})
    history = await event_log.read_aggregate("project", "P-1")
    assert isinstance(reply, CommandAccepted), reply
    (ours,) = [(v, e) for v, e in enumerate(history, 1) if e.envelope.causation_id == "unseen"]
    assert [(e.position, e.version) for e in reply.events] == [(ours[1].position, ours[0])]


async def test_expected_version_conflict(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with running(nc, "intake", nats_url, tmp_path):
        await send(nc, "ProposeProject", proposal("P-1"))
        writers = [
            send(
                nc,
                "UpdateProjectEstimate",
                {
                    "project_id": "P-1",
                    "capex": capex,
                    "opex": "0",
                    "reason": "new quote",
                    "expected_version": 1,
                },
            )
            for capex in ("1000", "2000")
        ]
        results = await asyncio.gather(*writers)
    accepted = [r for r in results if isinstance(r, CommandAccepted)]
    conflicts = [r for r in results if isinstance(r, CommandRejected)]
    assert len(accepted) == 1 and len(conflicts) == 1
    assert conflicts[0].error.code == ErrorCode.CONFLICT


async def test_bad_input_is_answered_kept_and_never_appended(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    cases: list[tuple[str, bytes | dict[str, object], ErrorCode, str | None]] = [
        ("ProposeProject", b"{not json", ErrorCode.MALFORMED, None),
        ("ProposeProject", b"\xff\xfe\x00", ErrorCode.MALFORMED, None),
        ("ProposeProject", b"[1, 2]", ErrorCode.MALFORMED, None),
        ("LaunchRocket", {"project_id": "P-1"}, ErrorCode.UNKNOWN_COMMAND, None),
        ("ProposeProject", {"project_id": "P-2"}, ErrorCode.VALIDATION_FAILED, "name"),
        ("ProposeProject", proposal("P-2", capex=-5), ErrorCode.VALIDATION_FAILED, "capex"),
        ("ProposeProject", proposal("P-2", capex="lots"), ErrorCode.VALIDATION_FAILED, "capex"),
        ("ProposeProject", proposal("P-2", surprise=1), ErrorCode.VALIDATION_FAILED, "surprise"),
        (
            "ProposeProject",
            proposal("P-2", planned_start="2027-06-01", planned_end="2027-01-01"),
            ErrorCode.VALIDATION_FAILED,
            None,
        ),
        ("ProposeProject", b"{" + b" " * 70_000 + b"}", ErrorCode.PAYLOAD_TOO_LARGE, None),
        ("ProposeProject", proposal("P-1"), ErrorCode.ALREADY_EXISTS, "project_id"),
        (
            "ApproveProject",
            {"project_id": "P-1", "rationale": "ok!"},
            ErrorCode.ILLEGAL_TRANSITION,
            None,
        ),
        ("ApproveProject", {"project_id": "P-1"}, ErrorCode.VALIDATION_FAILED, "rationale"),
        ("StartProject", {"project_id": "P-404"}, ErrorCode.NOT_FOUND, "project_id"),
    ]
    async with running(nc, "intake", nats_url, tmp_path):
        await send(nc, "ProposeProject", proposal("P-1"))
        for command, body, code, field in cases:
            reply = await send(nc, command, body)
            assert isinstance(reply, CommandRejected), (command, body)
            assert reply.error.code == code, (command, reply.error)
            assert reply.error.message
            if field is not None:
                assert field in [d.field for d in reply.error.details], reply.error
    assert await event_log.last_position() == 1
    kept = [r async for r in read_rejections(nc.jetstream(), SUBJECTS)]
    assert [r.error.code for r in kept] == [c[2] for c in cases]
    assert kept[0].raw == "{not json" and kept[0].raw_encoding == "utf-8"
    assert kept[1].raw_encoding == "base64"
    assert kept[9].raw_truncated and kept[9].raw_size > 70_000
    assert kept[3].subject == "portfolio.cmd.LaunchRocket"
