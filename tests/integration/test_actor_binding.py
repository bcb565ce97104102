"""Actor binding against a real nats-server with users and permissions: the tool user is
the shipped one of deploy/nats/auth.conf, under another name.

Each tool's NATS user may publish commands only under its own name
(`portfolio.cmd.<Command>.<user>`, `portfolio.inbox.<Command>.<user>`); intake reads that
principal from the subject and refuses a command claiming an actor the principal may not
act for. The server's permissions are what make the principal trustworthy, so both halves
are shown: the server refuses a tool sending under another name, and intake refuses a tool
claiming another actor.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from contracts.projects import ProposeProject, SubmitProjectForReview
from services.intake.principals import address_of
from shared.client import PortfolioClient
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog
from shared.rejections import read_rejections
from tests.integration.helpers import REPLY, SUBJECTS, proposal, running
from tests.integration.test_inbox import result_of

AUTH_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"


def shipped_tool_as(name: str, password: str) -> tuple[str, str]:
    """The shipped `tool` user of deploy/nats/auth.conf under another name (its own command
    subjects and reply inbox renamed with it), and the variables its permissions use."""
    text = AUTH_CONF.read_text()
    found = re.search(r"^    \{\n      user: tool\n.*?^    \}\n", text, re.MULTILINE | re.DOTALL)
    assert found, "no tool user in auth.conf"
    block = (
        found.group(0)
        .replace("user: tool", f"user: {name}")
        .replace("$NATS_PASSWORD_TOOL", password)
        .replace('.tool"', f'.{name}"')
        .replace("_INBOX.tool.", f"_INBOX.{name}.")
    )
    assert f"portfolio.cmd.*.{name}" in block and f"_INBOX.{name}.>" in block
    variables = "\n".join(
        m.group(0)
        for m in re.finditer(r"^([A-Z_]+) = \[.*?^\]", text, re.MULTILINE | re.DOTALL)
        if f"${m.group(1)}" in block
    )
    return block, variables


#: Intake and the test's own observer: everything (auth.conf narrows intake in production).
TRUSTED = """
    {{ user: {name}, password: {password}, permissions: {{ publish: ">", subscribe: ">" }} }}
"""


@pytest.fixture(autouse=True)
def database() -> str:
    """About NATS, not the projections' database: SQLite, once."""
    return "sqlite"


class Server:
    def __init__(self, url: str, passwords: dict[str, str]) -> None:
        self.url = url
        self.passwords = passwords
        self.violations: list[str] = []
        self.clients: list[Client] = []

    async def connect(self, user: str) -> Client:
        async def record(error: Exception) -> None:
            self.violations.append(str(error).lower())

        nc = await nats.connect(
            self.url,
            user=user,
            password=self.passwords[user],
            error_cb=record,
            allow_reconnect=False,
            inbox_prefix=f"_INBOX.{user}",
        )
        self.clients.append(nc)
        return nc

    async def violation(self, subject: str) -> None:
        """Wait until the server has reported a publish permissions violation on `subject`."""
        wanted = f'permissions violation for publish to "{subject}"'.lower()
        for _ in range(100):
            if any(wanted in v for v in self.violations):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no publish violation on {subject}: {self.violations}")

    def intake_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"nats_user": "intake", "nats_password": self.passwords["intake"]} | overrides


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    passwords = {user: "p" + secrets.token_hex(12) for user in ("intake", "admin", "finance")}
    users = [TRUSTED.format(name=u, password=passwords[u]) for u in ("intake", "admin")]
    finance, variables = shipped_tool_as("finance", passwords["finance"])
    users.append(finance)
    config = tmp_path / "server.conf"
    config.write_text(variables + "\nauthorization {\n  users = [" + "".join(users) + "  ]\n}\n")
    embedded = EmbeddedNats(tmp_path / "nats", extra_args=("-c", str(config)))
    embedded.start()
    found = Server(embedded.url, passwords)
    try:
        yield found
    finally:
        for nc in found.clients:
            if not nc.is_closed:
                await nc.close()
        embedded.stop()


async def request(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    return REPLY.validate_json(msg.data)


async def test_a_tool_acts_for_itself_or_a_bound_actor_only(server: Server, tmp_path: Path) -> None:
    admin = await server.connect("admin")
    finance = await server.connect("finance")
    settings = server.intake_settings(actor_bindings={"finance": ["finance-bot"]})
    async with running(admin, "intake", server.url, tmp_path, **settings):
        cmd = "portfolio.cmd.ProposeProject.finance"
        unnamed = proposal("P-1")
        del unnamed["actor"], unnamed["source"]
        itself = await request(finance, cmd, unnamed)
        bound = await request(finance, cmd, proposal("P-2", actor="finance-bot"))
        claimed = await request(finance, cmd, proposal("P-3", actor="cfo", command_id="c-3"))
        await finance.jetstream().publish(
            "portfolio.inbox.ApproveProject.finance",
            json.dumps({"project_id": "P-1", "rationale": "looks good", "actor": "cfo"}).encode(),
            headers={"Nats-Msg-Id": "approve-1"},
        )
        approved = CommandRejected.model_validate(await result_of(admin, "approve-1"))

    assert isinstance(itself, CommandAccepted) and isinstance(bound, CommandAccepted)
    log = EventLog(admin.jetstream(), SUBJECTS)
    (first,) = await log.read_aggregate("project", "P-1")
    assert (first.envelope.actor, first.envelope.source) == ("finance", "finance")
    (second,) = await log.read_aggregate("project", "P-2")
    assert second.envelope.actor == "finance-bot"
    assert await log.last_position() == 2  # nothing appended for the refused ones

    assert isinstance(claimed, CommandRejected)
    for refused in (claimed, approved):
        assert refused.error.code == ErrorCode.FORBIDDEN
        assert "'finance' may not act for 'cfo'" in refused.error.message
        assert refused.error.details[0].field == "actor"
    kept = [r async for r in read_rejections(admin.jetstream(), SUBJECTS)]
    assert [(r.subject, r.actor, r.error.code) for r in kept] == [
        ("portfolio.cmd.ProposeProject.finance", "cfo", ErrorCode.FORBIDDEN),
        ("portfolio.inbox.ApproveProject.finance", "cfo", ErrorCode.FORBIDDEN),
    ]
    assert kept[0].command_id == "c-3" and '"actor": "cfo"' in kept[0].raw


async def test_the_server_lets_a_tool_send_only_under_its_own_name(
    server: Server, tmp_path: Path
) -> None:
    admin = await server.connect("admin")
    finance = await server.connect("finance")
    async with running(admin, "intake", server.url, tmp_path, **server.intake_settings()):
        for subject in (
            "portfolio.cmd.ProposeProject.admin",
            "portfolio.cmd.ProposeProject",
            "portfolio.inbox.ProposeProject.admin",
            "portfolio.inbox.ProposeProject",
        ):
            body = json.dumps(proposal("P-1", actor="finance")).encode()
            with pytest.raises(nats.errors.TimeoutError):
                await finance.request(subject, body, timeout=1)
            await server.violation(subject)
        # Trusted users (the CLI) may still use the plain subject and claim any actor.
        plain = await request(admin, "portfolio.cmd.ProposeProject", proposal("P-2", actor="x"))
        assert isinstance(plain, CommandAccepted)
    assert await EventLog(admin.jetstream(), SUBJECTS).last_position() == 1


async def test_require_principal_refuses_unnamed_senders(server: Server, tmp_path: Path) -> None:
    admin = await server.connect("admin")
    settings = server.intake_settings(require_principal=True, actor_bindings={"admin": ["*"]})
    async with running(admin, "intake", server.url, tmp_path, **settings):
        unnamed = await request(admin, "portfolio.cmd.ProposeProject", proposal("P-1"))
        named = await request(admin, "portfolio.cmd.ProposeProject.admin", proposal("P-2"))
    assert isinstance(unnamed, CommandRejected) and unnamed.error.code == ErrorCode.FORBIDDEN
    assert isinstance(named, CommandAccepted)  # bound to "*": may act for alice


@pytest.mark.parametrize(
    ("prefix", "subject", "command", "principal"),
    [
        ("portfolio", "portfolio.cmd.ProposeProject", "ProposeProject", None),
        ("portfolio", "portfolio.inbox.ProposeProject.finance", "ProposeProject", "finance"),
        ("acme.pm", "acme.pm.cmd.StartProject.jira", "StartProject", "jira"),
    ],
)
def test_address_of(prefix: str, subject: str, command: str, principal: str | None) -> None:
    address = address_of(prefix, subject)
    assert (address.command, address.principal) == (command, principal)


async def test_the_client_sends_under_its_principal(server: Server, tmp_path: Path) -> None:
    admin = await server.connect("admin")
    finance = await server.connect("finance")
    settings = server.intake_settings(actor_bindings={"finance": ["finance-bot"]})
    client = PortfolioClient(finance, principal="finance", actor="finance-bot")
    async with running(admin, "intake", server.url, tmp_path, **settings):
        accepted = await client.send(
            ProposeProject.model_validate(proposal("P-9") | {"actor": "anonymous"})
        )
        refused = await client.send(
            ProposeProject.model_validate(proposal("P-10") | {"actor": "cfo"})
        )
        queued = await client.send_to_inbox(
            SubmitProjectForReview(project_id="P-9", command_id="submit-9")
        )
        submitted = await client.result(queued)
    assert isinstance(accepted, CommandAccepted)
    assert isinstance(refused, CommandRejected) and refused.error.code == ErrorCode.FORBIDDEN
    assert isinstance(submitted, CommandAccepted)
    log = EventLog(admin.jetstream(), SUBJECTS)
    events = await log.read_aggregate("project", "P-9")
    assert [e.envelope.actor for e in events] == ["finance-bot", "finance-bot"]
