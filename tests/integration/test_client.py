"""PortfolioClient against a real nats-server and intake."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts.base import CommandAccepted, CommandRejected, ErrorCode, ErrorInfo
from contracts.projects import ProposeProject, StartProject, SubmitProjectForReview
from contracts.queries import AuditQuery
from shared.client import REPLY, NoAnswer, PortfolioClient
from shared.eventlog import EventLog
from tests.integration.helpers import caught_up, proposal, running


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


def raw_proposal(project_id: str, **extra: Any) -> bytes:
    body = proposal(project_id, **extra)
    for name in ("actor", "source"):
        if name not in extra:
            del body[name]
    return json.dumps(body).encode()


async def test_raw_commands_are_stamped_with_who_sent_them(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    """What the CLI and the importer send: JSON text, stamped with the client's actor and
    source where it names none, and with a command id so that a resend is the same."""
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        client = PortfolioClient(nc, actor="alice", source="cli")
        first = REPLY.validate_json(await client.send_raw("ProposeProject", raw_proposal("R-1")))
        assert isinstance(first, CommandAccepted)
        kept = raw_proposal("R-2", actor="bob", source="tracker")
        assert isinstance(
            REPLY.validate_json(await client.send_raw("ProposeProject", kept)), CommandAccepted
        )
        claimed_nobody = raw_proposal("R-3", actor="anonymous", source="unknown")
        await client.send_raw("ProposeProject", claimed_nobody)
        malformed = REPLY.validate_json(await client.send_raw("ProposeProject", b"{oops"))
        assert isinstance(malformed, CommandRejected)
        assert malformed.error.code == ErrorCode.MALFORMED
        await caught_up(nc, "reporting", 3)
        entries = await client.audit_entries()
    assert [(e.aggregate_id, e.actor, e.source) for e in entries] == [
        ("R-1", "alice", "cli"),
        ("R-2", "bob", "tracker"),
        ("R-3", "alice", "cli"),
    ]


async def test_stamping_leaves_what_is_not_a_command_object_alone() -> None:
    client = PortfolioClient(None, actor="alice", source="cli")  # type: ignore[arg-type]
    for body in (b"{oops", b"[1, 2]", b'"text"', b"", b"\xff\xfe"):
        assert client.stamped_json(body) == (body, False)
    given = json.dumps({"command_id": "c-1", "actor": "bob", "source": "x"}).encode()
    assert client.stamped_json(given) == (given, True)  # byte for byte
    stamped, resendable = client.stamped_json(b'{"project_id": "P-1"}')
    data = json.loads(stamped)
    assert resendable and data["actor"] == "alice" and data["source"] == "cli"
    assert data["command_id"] and data["project_id"] == "P-1"
    # A wrong type is intake's to refuse, not the client's to overwrite.
    odd, _ = client.stamped_json(b'{"actor": 5}')
    assert json.loads(odd)["actor"] == 5


async def test_a_resend_is_the_same_command_on_the_principals_subject(nc: Client) -> None:
    """Told to come back later, the client asks again with the same command id, on the
    subject that names its principal."""
    seen: list[tuple[str, dict[str, Any]]] = []

    async def intake(msg: Msg) -> None:
        body = json.loads(msg.data)
        seen.append((msg.subject, body))
        if len(seen) == 1:
            error = ErrorInfo(code=ErrorCode.UNAVAILABLE, message="electing a leader")
            reply: CommandAccepted | CommandRejected = CommandRejected(
                command_id=body["command_id"], error=error
            )
        else:
            reply = CommandAccepted(command_id=body["command_id"], events=(), duplicate=True)
        await msg.respond(reply.model_dump_json().encode())

    sub = await nc.subscribe("portfolio.cmd.ProposeProject.ops", cb=intake)
    try:
        client = PortfolioClient(nc, actor="bob", source="cli", principal="ops", timeout=2)
        answer = REPLY.validate_json(await client.send_raw("ProposeProject", raw_proposal("R-9")))
    finally:
        await sub.unsubscribe()
    assert isinstance(answer, CommandAccepted)
    assert [subject for subject, _ in seen] == ["portfolio.cmd.ProposeProject.ops"] * 2
    assert seen[0][1] == seen[1][1] and seen[0][1]["actor"] == "bob"
    assert answer.command_id == seen[0][1]["command_id"]


async def test_queries_controls_and_the_alert_feed(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
        await PortfolioClient.connect(nats_url, timeout=10) as client,
    ):
        for n in range(5):
            await client.send(propose(f"Q-{n}"))
        await client.send_raw("ProposeProject", b"{oops")
        await caught_up(nc, "reporting", 5)

        async def stranger(msg: Msg) -> None:
            await msg.respond(b"not a status")

        impostor = await nc.subscribe("portfolio.query.risk.status", cb=stranger)
        statuses = await client.statuses(timeout=1)
        await impostor.unsubscribe()
        assert statuses["intake"] and statuses["reporting"]
        assert statuses["ledger"] is None  # not running: None, not an exception
        assert statuses["risk"] is None  # an answer it cannot read: the same
        paged = await client.audit_entries(AuditQuery(limit=2), limit=4)
        assert [e.aggregate_id for e in paged] == ["Q-0", "Q-1", "Q-2", "Q-3"]
        [rejection] = await client.rejections()
        assert rejection.raw == "{oops" and rejection.error.code == ErrorCode.MALFORMED
        # Anything else on the stream (the embedded server lets anyone publish) is read as
        # what it is, and the rejections after it are still read.
        for hostile in (b"\xff\x00", b'{"rejection_id": 1}'):
            await nc.jetstream().publish("portfolio.rejections.Forged", hostile)
        await client.send_raw("ProposeProject", b"[]")
        found = await client.rejections()
        assert [r.rejection_id.startswith("unreadable-") for r in found] == [
            False,
            True,
            True,
            False,
        ]
        assert found[1].raw_encoding == "base64" and "not a rejection record" in (
            found[2].error.message
        )
        assert found[3].raw == "[]"

        refused = await client.query("reporting", "report", {"as_of": "not a time"})
        assert "error" in refused
        started = await client.replay("reporting")
        assert started.service == "reporting" and started.target_position == 5

        with pytest.raises(NoAnswer, match=r"no responders .* portfolio\.query\.ledger\.budget"):
            await client.query("ledger", "budget", {"by": "pool"})

        feed = client.follow_alerts()
        first = asyncio.ensure_future(anext(feed))
        await asyncio.sleep(0.2)  # the feed starts at new alerts: subscribed before this one
        alert = {"event": "AlertRaised", "alert_id": "A-1", "severity": "warning"}
        js = nc.jetstream()
        # Anything on the stream (the embedded server lets anyone publish) and the feed goes on.
        for hostile in (b"\xff not json", b"[1, 2]", b'"\\ud800"'):
            await js.publish("portfolio.alerts.warning.cpi", hostile)
        await js.publish("portfolio.alerts.warning.cpi", json.dumps(alert).encode())
        unreadable = await asyncio.wait_for(first, 10)
        assert unreadable["event"] == "Unreadable" and "not json" in unreadable["raw"]
        rest = [await asyncio.wait_for(anext(feed), 10) for _ in range(3)]
        assert [x["event"] for x in rest[:2]] == ["Unreadable"] * 2 and rest[2] == alert
        await feed.aclose()
