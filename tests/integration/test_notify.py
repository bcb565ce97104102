"""Alert delivery end to end: intake, the risk monitor and the notify service on a real
nats-server; a local aiohttp receiver (webhook, Slack, Teams) and a real SMTP server
(aiosmtpd), both on ephemeral ports. Signed webhooks, every channel's format, a receiver
that was down getting what it missed in order and once, dead letters with their reason,
filters, and the outcomes query."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from nats.aio.client import Client

from contracts.base import CommandRejected
from shared.eventlog import EventLog
from tests.integration.helpers import accepted, project_risk, proposal, query, running, send

SECRET = "hook-secret"
BASE = "https://portfolio.example/dash"


@dataclass
class Receiver:
    """Records every request; answers `status` (503: down) per path."""

    url: str = ""
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        code = self.status.get(request.path, 200)
        if code == 200:
            self.got.append((request.path, dict(request.headers), body))
            self.arrived.set()
        return web.Response(status=code, text="ok" if code == 200 else "down")

    def on(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b in self.got if p == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


async def until(check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.05)


async def outcomes(nc: Client, **body: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(await query(nc, "notify", "deliveries", body))[
        "deliveries"
    ]
    return found


async def test_alerts_reach_webhooks_chat_and_email_in_order_once_with_dead_letters(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    receiver: Receiver,
    smtp: tuple[Mailbox, int],
) -> None:
    box, smtp_port = smtp
    notify = {
        "dashboard_base_url": BASE,
        "notify_webhook_secrets": {"ops": SECRET},
        "notify_max_attempts": 200,
        "notify_backoff_seconds": 0.05,
        "notify_backoff_max_seconds": 0.2,
        "smtp_port": smtp_port,
    }
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "risk", nats_url, tmp_path),
        running(nc, "notify", nats_url, tmp_path, **notify),
    ):
        hook, slack, teams = (f"{receiver.url}/{x}" for x in ("hook", "slack", "teams"))
        # Bad input: answered, nothing subscribed.
        for bad in (
            {"channel": "email", "target": "http://not-an-address"},
            {"channel": "webhook", "target": "ftp://x"},
            {"channel": "webhook", "target": hook},  # no secret to sign with
            {"channel": "pager", "target": hook},
            {"channel": "slack", "target": slack, "severities": ["loud"]},
        ):
            refused = await send(nc, "Subscribe", {"subscription_id": "bad", **bad})
            assert isinstance(refused, CommandRejected), bad
        gone = await send(nc, "Unsubscribe", {"subscription_id": "never"})
        assert isinstance(gone, CommandRejected) and gone.error.code == "not_found"

        await accepted(nc, "ProposeProject", proposal("P-1", programme="PRG-1"))
        subscriptions: dict[str, dict[str, Any]] = {
            "hook": {"channel": "webhook", "target": hook, "secret_ref": "ops"},
            "slack": {"channel": "slack", "target": slack, "metrics": ["risk_score"]},
            "teams": {"channel": "teams", "target": teams, "programmes": ["PRG-1"]},
            "mail": {"channel": "email", "target": "pmo@example.org", "projects": ["P-1"]},
            "critical-only": {"channel": "slack", "target": slack, "severities": ["critical"]},
            "gone-hook": {"channel": "slack", "target": f"{receiver.url}/gone"},
        }
        for sub_id, body in subscriptions.items():
            await accepted(nc, "Subscribe", {"subscription_id": sub_id, **body})
        receiver.status["/gone"] = 410
        await asyncio.sleep(1.0)  # the workers start after the subscriptions are folded

        await accepted(nc, "IdentifyRisk", project_risk("R-1", "P-1", probability=4, impact=4))
        await until(lambda: len(receiver.on("/hook")) == 1 and len(box.messages) == 1)
        await until(lambda: len(receiver.on("/slack")) == 1 and len(receiver.on("/teams")) == 1)

        headers, raw = receiver.on("/hook")[0]
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
        assert headers["X-Portfolio-Delivery"] and headers["X-Portfolio-Timestamp"].isdigit()
        body = json.loads(raw)
        assert body["event"] == "AlertRaised" and body["alert"]["project_id"] == "P-1"
        assert body["alert"]["rule_id"] == "default-risk-score"
        assert body["link"] == f"{BASE}/projects?project=P-1"
        assert body["alert"]["figures"]["score"] == 16

        slack_body = json.loads(receiver.on("/slack")[0][1])
        assert "P-1" in slack_body["text"] and slack_body["blocks"]
        card = json.loads(receiver.on("/teams")[0][1])
        assert card["type"] == "message"
        attachment = card["attachments"][0]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["type"] == "AdaptiveCard"
        assert attachment["content"]["actions"][0]["url"] == f"{BASE}/projects?project=P-1"

        mail = message_from_bytes(box.messages[0])
        assert "P-1" in mail["Subject"] and "risk_score" in mail["Subject"]
        raw_text = mail.get_payload(decode=True)
        assert isinstance(raw_text, bytes)
        text = raw_text.decode()
        assert f"{BASE}/projects?project=P-1" in text and "default-risk-score" in text

        # The receiver goes down; alerts keep coming; it comes back and gets them in order.
        receiver.status["/hook"] = 503
        await accepted(
            nc,
            "ChooseRiskResponse",
            {
                "risk_id": "R-1",
                "strategy": "mitigate",
                "plan": "second vendor",
                "due": "2027-05-01",
            },
        )
        await accepted(
            nc,
            "ReassessRisk",
            {
                "risk_id": "R-1",
                "residual_probability": 2,
                "residual_impact": 2,
                "rationale": "done",
            },
        )
        await accepted(
            nc,
            "AssessRisk",
            {"risk_id": "R-1", "probability": 5, "impact": 4, "rationale": "worse"},
        )
        await until(lambda: len(box.messages) == 3)
        assert len(receiver.on("/hook")) == 1
        await asyncio.sleep(0.5)
        receiver.status.pop("/hook")
        await until(lambda: len(receiver.on("/hook")) == 3)
        events = [json.loads(b)["event"] for _, b in receiver.on("/hook")]
        assert events == ["AlertRaised", "AlertCleared", "AlertRaised"]
        deliveries = [h["X-Portfolio-Delivery"] for h, _ in receiver.on("/hook")]
        assert len(set(deliveries)) == 3  # once each

        # A filter that matches nothing got nothing; a receiver that refuses for good is
        # dead-lettered at once, with the reason.
        found = await outcomes(nc)
        assert not [x for x in found if x["subscription_id"] == "critical-only"]
        dead = await outcomes(nc, outcome="dead_letter")
        assert dead and {x["subscription_id"] for x in dead} == {"gone-hook"}
        assert "410" in dead[0]["reason"] and dead[0]["attempts"] == 1
        hook_outcomes = await outcomes(nc, subscription_id="hook")
        assert [x["event_type"] for x in hook_outcomes] == events
        assert hook_outcomes[1]["attempts"] > 1  # retried while the receiver was down
        malformed = json.loads(await query(nc, "notify", "deliveries", {"limit": "many"}))
        assert "error" in malformed

    # Restarted: nothing is sent twice.
    before = len(receiver.got)
    async with running(nc, "notify", nats_url, tmp_path, **notify):
        await asyncio.sleep(1.5)
    assert len(receiver.got) == before


async def test_retries_spent_make_a_dead_letter_and_the_next_alert_still_goes(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog, receiver: Receiver
) -> None:
    notify = {"notify_max_attempts": 3, "notify_backoff_seconds": 0.05}
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "risk", nats_url, tmp_path),
        running(nc, "notify", nats_url, tmp_path, **notify),
    ):
        await accepted(nc, "ProposeProject", proposal("P-1"))
        await accepted(
            nc,
            "Subscribe",
            {"subscription_id": "s", "channel": "slack", "target": f"{receiver.url}/s"},
        )
        await asyncio.sleep(1.0)
        receiver.status["/s"] = 500
        await accepted(nc, "IdentifyRisk", project_risk("R-1", "P-1", probability=4, impact=4))
        for _ in range(200):
            dead = json.loads(await query(nc, "notify", "deliveries", {"outcome": "dead_letter"}))
            if dead["deliveries"]:
                break
            await asyncio.sleep(0.1)
        [letter] = dead["deliveries"]
        assert letter["attempts"] == 3 and "HTTP 500" in letter["reason"]
        receiver.status.pop("/s")
        await accepted(nc, "CloseRisk", {"risk_id": "R-1", "rationale": "resolved"})
        await until(lambda: len(receiver.on("/s")) == 1)
        assert json.loads(receiver.on("/s")[0][1])["text"].count("R-1") >= 1
        await accepted(nc, "Unsubscribe", {"subscription_id": "s"})


async def test_a_hostile_alert_reaches_a_mailbox_cleaned_and_holds_up_nothing(
    nc: Client, nats_url: str, tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    """Alerts published straight onto the alerts stream (the embedded server has no
    authentication) with a line break in the severity (a header of its own, to a mail
    library) and a lone surrogate (valid JSON escapes): each reaches the mailbox with its
    subject on one line, and the ordinary alert after them follows."""
    box, port = smtp
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "notify", nats_url, tmp_path, smtp_port=port, notify_max_attempts=2),
    ):
        target = {"subscription_id": "m", "channel": "email", "target": "ops@example.org"}
        await accepted(nc, "Subscribe", target)
        await asyncio.sleep(1.0)  # the subscription's worker starts
        alerts = [
            {"event_id": "h-1", "alert_id": "A-1", "severity": "warning\r\nBcc: x@evil.test"},
            {"event_id": "h-2", "alert_id": "A-2\ud800", "subject_id": "P-\ud800", "value": 1},
            {"event_id": "h-3", "alert_id": "A-3", "event": "AlertRaised", "severity": "info"},
        ]
        js = nc.jetstream()
        for alert in alerts:
            await js.publish("portfolio.alerts.warning.cpi", json.dumps(alert).encode())
        await until(lambda: len(box.messages) == 3)
        found = await outcomes(nc)
    mails = [message_from_bytes(raw) for raw in box.messages]
    assert [m["Bcc"] for m in mails] == [None] * 3
    assert "\n" not in str(mails[0]["Subject"]) and "WARNING" in str(mails[0]["Subject"])
    body = mails[1].get_payload(decode=True)  # the surrogate escaped: nothing else is sent
    assert isinstance(body, bytes) and b"subject: P-\\ud800" in body
    assert str(mails[2]["Subject"]).startswith("[INFO] RAISED")  # the ordinary one, after
    assert [x["outcome"] for x in found] == ["delivered"] * 3
