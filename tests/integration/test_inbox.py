"""The durable inbox: kept while intake is down, processed once, answered by command id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from contracts.subjects import RESULTS_STREAM
from shared.eventlog import EventLog
from shared.rejections import read_rejections
from tests.integration.helpers import SUBJECTS, proposal, running


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
