"""The durable inbox: kept while intake is down, processed once, answered by command id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from contracts.subjects import RESULTS_STREAM
from services.intake import handlers
from services.intake import inbox as inbox_module
from shared.eventlog import EventLog
from shared.rejections import read_rejections
from tests.hostile import BAD_IDS
from tests.integration.helpers import SUBJECTS, proposal, running, wait_for_status


async def result_of(nc: Client, command_id: str, timeout: float = 20) -> dict[str, object]:
    js = nc.jetstream()
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            msg = await js.get_last_msg(RESULTS_STREAM, SUBJECTS.result(command_id))
        except NotFoundError:
            await asyncio.sleep(0.05)
            continue
        assert msg.data is not None
        result: dict[str, object] = json.loads(msg.data)
        return result
    raise AssertionError(f"no result for {command_id}")


async def test_commands_wait_for_intake_and_are_appended_once(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    js = nc.jetstream()
    for n in range(30):
        body = proposal(f"P-{n}", command_id=f"inbox-cmd-{n}")
        await js.publish(SUBJECTS.inbox("ProposeProject"), json.dumps(body).encode())
    # One aggregate's commands in one batch keep their order.
    for n, (command, body) in enumerate(
        [
            ("SubmitProjectForReview", {"project_id": "P-0"}),
            ("ApproveProject", {"project_id": "P-0", "rationale": "board decision"}),
            ("StartProject", {"project_id": "P-0"}),
        ]
    ):
        body = body | {"command_id": f"lifecycle-{n}"}
        await js.publish(SUBJECTS.inbox(command), json.dumps(body).encode())
    assert await event_log.last_position() == 0  # nothing happens while intake is down

    async with running(nc, "intake", nats_url, tmp_path):
        results = [await result_of(nc, f"inbox-cmd-{n}") for n in range(30)]
        lifecycle = [await result_of(nc, f"lifecycle-{n}") for n in range(3)]
    assert all(r["status"] == "accepted" for r in results + lifecycle), lifecycle
    history = await event_log.read_aggregate("project", "P-0")
    assert [e.envelope.event_type for e in history] == [
        "ProjectProposed",
        "ProjectSubmittedForReview",
        "ProjectApproved",
        "ProjectStarted",
    ]
    assert await event_log.last_position() == 33


async def test_resent_and_id_less_commands_are_not_appended_twice(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    js = nc.jetstream()
    async with running(nc, "intake", nats_url, tmp_path):
        body = json.dumps(proposal("P-1", command_id="resent")).encode()
        await js.publish(SUBJECTS.inbox("ProposeProject"), body, headers={"Nats-Msg-Id": "a"})
        first = await result_of(nc, "resent")
        await js.publish(SUBJECTS.inbox("ProposeProject"), body, headers={"Nats-Msg-Id": "b"})
        await asyncio.sleep(0.5)
        second = await result_of(nc, "resent")
        # Without a command id the sender's message id stands in for it.
        no_id = json.dumps(proposal("P-2")).encode()
        await js.publish(SUBJECTS.inbox("ProposeProject"), no_id, headers={"Nats-Msg-Id": "t-9"})
        third = await result_of(nc, "t-9")
    assert (
        CommandAccepted.model_validate(first).events
        == CommandAccepted.model_validate(second).events
    )
    assert second["duplicate"] is True
    assert third["status"] == "accepted" and third["command_id"] == "t-9"
    assert await event_log.last_position() == 2


async def test_bad_inbox_input_is_answered_and_kept(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    js = nc.jetstream()
    async with running(nc, "intake", nats_url, tmp_path):
        await js.publish(
            SUBJECTS.inbox("ProposeProject"), b"{broken", headers={"Nats-Msg-Id": "bad-1"}
        )
        await js.publish(
            SUBJECTS.inbox("ProposeProject"),
            json.dumps(proposal("P-1", capex=-1, command_id="neg-1")).encode(),
        )
        broken = CommandRejected.model_validate(await result_of(nc, "bad-1"))
        negative = CommandRejected.model_validate(await result_of(nc, "neg-1"))
    assert broken.error.code == ErrorCode.MALFORMED
    assert negative.error.code == ErrorCode.VALIDATION_FAILED
    kept = [r async for r in read_rejections(js, SUBJECTS)]
    assert [r.subject for r in kept] == ["portfolio.inbox.ProposeProject"] * 2
    assert kept[0].raw == "{broken"
    assert await event_log.last_position() == 0


async def test_a_batch_keeps_references_in_order(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """A proposal must not overtake the objective it serves, even in one inbox batch."""
    js = nc.jetstream()
    objective = {"objective_id": "O-1", "name": "Cloud first", "owner": "cio", "weight": 30}
    await js.publish(
        SUBJECTS.inbox("DefineObjective"), json.dumps(objective | {"command_id": "o-1"}).encode()
    )
    for n in range(20):
        body = proposal(
            f"P-{n}",
            command_id=f"p-{n}",
            objectives=[{"objective_id": "O-1", "contribution": 3}],
        )
        await js.publish(SUBJECTS.inbox("ProposeProject"), json.dumps(body).encode())
    retire = {"objective_id": "O-1", "rationale": "strategy changed", "command_id": "o-retire"}
    await js.publish(SUBJECTS.inbox("RetireObjective"), json.dumps(retire).encode())
    async with running(nc, "intake", nats_url, tmp_path):
        outcomes = [await result_of(nc, f"p-{n}") for n in range(20)]
        retired = await result_of(nc, "o-retire")
    assert [o["status"] for o in outcomes] == ["accepted"] * 20
    assert retired["status"] == "accepted"
    assert await event_log.last_position() == 22


# --- whatever a message holds: one outcome, never the loop ------------------------------


async def test_ids_that_cannot_be_subject_tokens_are_answered_under_a_safe_id(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """A command id with a space once stopped the inbox for good (BadSubjectError when its
    outcome was published): now each such message is answered under `inbox-<sequence>` (or
    its Nats-Msg-Id), kept in rejections, and the inbox goes on."""
    js = nc.jetstream()
    sent: dict[str, str] = {}  # outcome id -> the bad id
    for n, bad in enumerate(BAD_IDS):
        body = json.dumps(proposal(f"P-{n}", command_id=bad)).encode()
        ack = await js.publish(SUBJECTS.inbox("ProposeProject"), body)
        sent[f"inbox-{ack.seq}"] = bad
    # A message id that is no subject token either is not used for the outcome.
    body = json.dumps(proposal("P-x", command_id="a b")).encode()
    ack = await js.publish(SUBJECTS.inbox("ProposeProject"), body, headers={"Nats-Msg-Id": "c d"})
    sent[f"inbox-{ack.seq}"] = "a b"
    # ... one that is stands in for the command id.
    body = json.dumps(proposal("P-y", command_id="a.b")).encode()
    await js.publish(SUBJECTS.inbox("ProposeProject"), body, headers={"Nats-Msg-Id": "msg-7"})
    sent["msg-7"] = "a.b"
    good = json.dumps(proposal("P-ok", command_id="after-the-bad-ones")).encode()
    await js.publish(SUBJECTS.inbox("ProposeProject"), good)

    async with running(nc, "intake", nats_url, tmp_path):
        outcomes = {oid: await result_of(nc, oid) for oid in sent}
        after = await result_of(nc, "after-the-bad-ones")
        status = await wait_for_status(
            nc, "intake", lambda s: s.inbox is not None and s.inbox.waiting_for_ack == 0
        )
    for oid, outcome in outcomes.items():
        rejected = CommandRejected.model_validate(outcome)
        assert rejected.command_id == oid
        assert rejected.error.code in (ErrorCode.VALIDATION_FAILED, ErrorCode.MALFORMED), oid
    assert after["status"] == "accepted"
    assert status.state == "running" and status.inbox is not None
    assert status.inbox.running and status.inbox.pending == 0
    assert status.inbox.answered_since_start == len(sent) + 1
    kept = [r async for r in read_rejections(js, SUBJECTS)]
    assert sorted(r.command_id or "" for r in kept) == sorted(sent)
    assert all(json.loads(r.raw)["name"].startswith("Project P-") for r in kept)  # raw, kept
    assert await event_log.last_position() == 1


async def test_a_message_that_breaks_processing_becomes_a_dead_letter(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error while processing one message costs that message a few redeliveries, then
    it is answered `internal`, kept in rejections with its raw bytes, and removed; the
    messages around it are answered as usual."""
    real = handlers.handle_parsed
    attempts = 0

    async def breaks_on_poison(
        intake: Any, subject: str, body: bytes, name: str, command: Any
    ) -> handlers.Reply:
        nonlocal attempts
        if command.command_id == "poison":
            attempts += 1
            raise RuntimeError("the decision blew up")
        return await real(intake, subject, body, name, command)

    monkeypatch.setattr(inbox_module, "handle_parsed", breaks_on_poison)
    js = nc.jetstream()
    for command_id, project in [("before", "P-1"), ("poison", "P-2"), ("after", "P-3")]:
        body = json.dumps(proposal(project, command_id=command_id)).encode()
        await js.publish(SUBJECTS.inbox("ProposeProject"), body)
    async with running(
        nc,
        "intake",
        nats_url,
        tmp_path,
        inbox_max_deliveries=3,
        projection_retry_delay_seconds=0.05,
    ):
        before, after = await result_of(nc, "before"), await result_of(nc, "after")
        dead = CommandRejected.model_validate(await result_of(nc, "poison"))
        status = await wait_for_status(
            nc, "intake", lambda s: s.inbox is not None and s.inbox.waiting_for_ack == 0
        )
        # The inbox still answers what comes next.
        body = json.dumps(proposal("P-4", command_id="later")).encode()
        await js.publish(SUBJECTS.inbox("ProposeProject"), body)
        later = await result_of(nc, "later")
    assert before["status"] == after["status"] == later["status"] == "accepted"
    assert attempts == 3
    assert dead.error.code == ErrorCode.INTERNAL
    assert "dead letter" in dead.error.message and "the decision blew up" in dead.error.message
    assert status.inbox is not None and status.inbox.dead_letters_since_start == 1
    assert status.inbox.last_error is not None and "blew up" in status.inbox.last_error
    assert status.inbox.pending == 0
    [kept] = [r async for r in read_rejections(js, SUBJECTS)]
    assert kept.command_id == "poison" and json.loads(kept.raw)["project_id"] == "P-2"
    assert await event_log.last_position() == 3


async def test_intake_reads_degraded_when_its_inbox_loop_is_not_running(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async with running(nc, "intake", nats_url, tmp_path):
        healthy = await wait_for_status(nc, "intake", lambda s: s.inbox is not None)
        [loop] = [t for t in asyncio.all_tasks() if t.get_name() == "intake-inbox"]
        loop.cancel()
        degraded = await wait_for_status(nc, "intake", lambda s: s.state != "running")
    assert healthy.state == "running" and healthy.inbox is not None and healthy.inbox.running
    assert degraded.state == "degraded"
    assert degraded.inbox is not None and not degraded.inbox.running
