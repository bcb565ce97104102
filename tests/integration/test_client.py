"""PortfolioClient against a real nats-server and intake."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from contracts.projects import ProposeProject, StartProject, SubmitProjectForReview
from shared.client import PortfolioClient
from shared.eventlog import EventLog
from tests.integration.helpers import caught_up, running


def propose(project_id: str) -> ProposeProject:
    return ProposeProject(
        project_id=project_id,
        name="Data platform",
        sponsor="cdo",
        planned_start=date(2027, 1, 1),
        planned_end=date(2027, 6, 30),
    )


async def test_typed_commands_replies_and_queries(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
        await PortfolioClient.connect(nats_url, actor="tracker-bot", source="tracker") as client,
    ):
        accepted = await client.send(propose("D-1"))
        assert isinstance(accepted, CommandAccepted)
        await client.send(SubmitProjectForReview(project_id="D-1"))
        refused = await client.send(StartProject(project_id="D-1"))
        assert isinstance(refused, CommandRejected)
        assert refused.error.code == ErrorCode.ILLEGAL_TRANSITION  # not approved yet
        await caught_up(nc, "reporting", 2)
        audit = await client.audit()
        assert [(e.actor, e.source) for e in audit.entries] == [("tracker-bot", "tracker")] * 2
        assert [p.project_id for p in (await client.projects()).projects] == ["D-1"]
        assert (await client.status("intake")).service == "intake"


async def test_inbox_and_result(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with await PortfolioClient.connect(nats_url) as client:
        command_id = await client.send_to_inbox(propose("D-2"))
        with pytest.raises(TimeoutError):
            await client.result(command_id, timeout=0.3)  # intake is not running yet
        async with running(nc, "intake", nats_url, tmp_path):
            reply = await client.result(command_id)
    assert isinstance(reply, CommandAccepted) and reply.command_id == command_id


async def test_a_retry_reuses_the_command_id(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    command = propose("D-3")
    async with (
        running(nc, "intake", nats_url, tmp_path),
        await PortfolioClient.connect(nats_url) as client,
    ):
        first = await client.send(command)
        second = await client.send(command)  # what a retry after a lost reply looks like
    assert isinstance(first, CommandAccepted) and isinstance(second, CommandAccepted)
    assert second.duplicate and second.events == first.events
    assert await event_log.last_position() == 1


async def test_no_intake_is_a_timeout_not_a_hang(nc: Client, event_log: EventLog) -> None:
    client = PortfolioClient(nc, timeout=0.2, attempts=2)
    with pytest.raises(Exception, match=r"no responders|timeout"):
        await client.send(propose("D-4"))
