"""NATS users and permissions (deploy/nats/auth.conf) and TLS, against a real nats-server.

Each refusal is shown twice: the client gets no answer (a JetStream append or API call
times out) and the server reports a permissions violation for exactly that subject; then
the streams are checked to be unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
import trustme
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import APIError

from contracts.base import CommandAccepted, CommandRejected, ErrorCode
from contracts.projects import ProposeProject
from contracts.subjects import (
    ALERTS_STREAM,
    INBOX_STREAM,
    LOG_STREAM,
    REJECTIONS_STREAM,
    RESULTS_STREAM,
    SERVICES,
)
from shared.client import PortfolioClient
from shared.embedded_nats import EmbeddedNats, nats_server_binary
from shared.eventlog import EventLog, log_stream_config
from shared.settings import PortfolioSettings
from tests.integration.helpers import REPLY, SUBJECTS, caught_up, proposal, running
from tests.unit.test_deploy_files import compose_service_environment

ROOT = Path(__file__).resolve().parents[2]
AUTH_CONF = ROOT / "deploy" / "nats" / "auth.conf"
USERS = (*SERVICES, "tool", "admin", "gateway")
STREAMS = (LOG_STREAM, REJECTIONS_STREAM, INBOX_STREAM, RESULTS_STREAM, ALERTS_STREAM)
#: JetStream's answer to creating a stream that exists with another configuration.
STREAM_NAME_IN_USE = 10058
#: A refused request gets no answer; this is how long we wait for one.
REFUSED_WITHIN = 1.0
SCORING = {
    "business_value": 8,
    "time_criticality": 5,
    "risk_reduction": 3,
    "job_size": 5,
    "npv": "40000",
    "risk": 2,
    "urgency": 3,
}


@pytest.fixture(autouse=True)
def database() -> str:
    """These tests are about NATS, not the projections' database: SQLite, once."""
    return "sqlite"


class AuthServer:
    """A nats-server with deploy/nats/auth.conf and a fresh password per user."""

    def __init__(self, server: EmbeddedNats, passwords: dict[str, str]) -> None:
        self.server = server
        self.passwords = passwords
        self.url = server.url
        self.errors: dict[str, list[str]] = {}
        self._clients: list[Client] = []

    async def connect(self, user: str, **options: Any) -> Client:
        errors = self.errors.setdefault(user, [])

        async def record(error: Exception) -> None:
            errors.append(str(error).lower())

        # Each user's replies on its own inbox subjects, as PortfolioSettings.nats_options
        # connects every service and the CLI.
        options.setdefault("inbox_prefix", f"_INBOX.{user}")
        nc = await nats.connect(
            self.url,
            user=user,
            password=self.passwords[user],
            error_cb=record,
            allow_reconnect=False,
            **options,
        )
        self._clients.append(nc)
        return nc

    async def violation(self, user: str, subject: str, kind: str = "publish") -> None:
        """Wait until the server has reported `user`'s violation on `subject`."""
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        for _ in range(100):
            if any(wanted in e for e in self.errors.get(user, ())):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind} violation on {subject} for {user}: {self.errors}")

    async def close(self) -> None:
        for nc in self._clients:
            if not nc.is_closed:
                await nc.close()


def write_auth_config(directory: Path, extra: str = "") -> Path:
    """A server config that includes the repository's auth.conf (includes are relative to
    the including file, so the file is copied beside it unchanged)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(AUTH_CONF, directory / "auth.conf")
    config = directory / "server.conf"
    config.write_text(f"include auth.conf\n{extra}")
    return config


def set_passwords(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """auth.conf reads each password from the server's environment."""
    passwords = {user: "p" + secrets.token_hex(12) for user in USERS}
    for user, password in passwords.items():
        monkeypatch.setenv(f"NATS_PASSWORD_{user.upper()}", password)
    return passwords


@pytest.fixture
async def auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AuthServer]:
    passwords = set_passwords(monkeypatch)
    config = write_auth_config(tmp_path / "conf")
    server = EmbeddedNats(tmp_path / "nats", extra_args=("-c", str(config)))
    server.start()
    found = AuthServer(server, passwords)
    try:
        yield found
    finally:
        await found.close()
        server.stop()


@pytest.fixture
async def intake_log(auth: AuthServer) -> EventLog:
    """The streams, created as a service creates them at start."""
    nc = await auth.connect("intake")
    log = EventLog(nc.jetstream(), SUBJECTS)
    await log.ensure_streams()
    return log


async def refused(action: Awaitable[Any]) -> None:
    """No answer comes (nats-py's delete_msg waits 5 s whatever the context's timeout)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(action, 2 * REFUSED_WITHIN)


async def message_counts(log: EventLog) -> dict[str, int]:
    counts = {}
    for stream in STREAMS:
        info = await log.js.stream_info(stream)
        counts[stream] = int(info.state.messages)
    return counts


def test_auth_conf_is_valid_for_nats_server() -> None:
    bare = {k: v for k, v in os.environ.items() if not k.startswith("NATS_PASSWORD_")}
    check = [nats_server_binary(), "-t", "-c", str(AUTH_CONF)]
    passwords = {f"NATS_PASSWORD_{user.upper()}": f"pw{user}" for user in USERS}
    valid = subprocess.run(check, capture_output=True, text=True, env=bare | passwords)
    assert valid.returncode == 0, valid.stderr
    # A password missing from the environment: the server refuses to start.
    del passwords["NATS_PASSWORD_TOOL"]
    invalid = subprocess.run(check, capture_output=True, text=True, env=bare | passwords)
    assert invalid.returncode != 0 and "NATS_PASSWORD_TOOL" in invalid.stderr


async def test_no_password_no_connection(auth: AuthServer) -> None:
    with pytest.raises(Exception) as anonymous:
        await nats.connect(auth.url, allow_reconnect=False, max_reconnect_attempts=0)
    assert "authorization" in str(anonymous.value).lower()
    with pytest.raises(Exception) as wrong:
        await nats.connect(
            auth.url, user="tool", password="guess", allow_reconnect=False, max_reconnect_attempts=0
        )
    assert "authorization" in str(wrong.value).lower()


async def test_a_tool_cannot_write_the_log_or_touch_the_streams(
    auth: AuthServer, intake_log: EventLog
) -> None:
    tool = await auth.connect("tool")
    js = tool.jetstream(timeout=REFUSED_WITHIN)
    before = await message_counts(intake_log)
    log_config = (await intake_log.js.stream_info(LOG_STREAM)).config

    weakened = log_config.evolve(deny_delete=False, deny_purge=False, max_msgs=1)
    await asyncio.gather(
        refused(js.publish("portfolio.events.project.X", b"{}", timeout=REFUSED_WITHIN)),
        refused(js.purge_stream(LOG_STREAM)),
        refused(js.purge_stream(ALERTS_STREAM)),
        refused(js.delete_msg(ALERTS_STREAM, 1)),
        refused(js.delete_stream(LOG_STREAM)),
        refused(js.update_stream(weakened)),
        refused(js.add_stream(StreamConfig(name="SIDE_LOG", subjects=["portfolio.cmd.>"]))),
        refused(js.add_stream(log_stream_config(SUBJECTS, 120.0))),
    )
    for subject in (
        "portfolio.events.project.X",
        f"$JS.API.STREAM.PURGE.{LOG_STREAM}",
        f"$JS.API.STREAM.PURGE.{ALERTS_STREAM}",
        f"$JS.API.STREAM.MSG.DELETE.{ALERTS_STREAM}",
        f"$JS.API.STREAM.DELETE.{LOG_STREAM}",
        f"$JS.API.STREAM.UPDATE.{LOG_STREAM}",
        "$JS.API.STREAM.CREATE.SIDE_LOG",
        f"$JS.API.STREAM.CREATE.{LOG_STREAM}",
    ):
        await auth.violation("tool", subject)

    # Nor fake what only services say: alerts, results, rejections, control requests.
    for subject in (
        "portfolio.alerts.critical.fake",
        "portfolio.results.cmd-1",
        "portfolio.rejections.ProposeProject",
        "portfolio.control.reporting.replay",
        "$KV.PORTFOLIO_LEASES.intake",
    ):
        await tool.publish(subject, b"{}")
        await auth.violation("tool", subject)
    # Nor take commands off intake's queue, or read the log's subjects directly.
    await tool.subscribe("portfolio.cmd.*", queue="intake")
    await auth.violation("tool", "portfolio.cmd.*", kind="subscription")
    await tool.subscribe("portfolio.events.>")
    await auth.violation("tool", "portfolio.events.>", kind="subscription")

    assert await message_counts(intake_log) == before
    after = (await intake_log.js.stream_info(LOG_STREAM)).config
    assert (after.deny_delete, after.deny_purge, after.max_msgs) == (True, True, -1)
    for stream in STREAMS:  # all still there
        assert (await intake_log.js.stream_info(stream)).config.name == stream


async def test_a_tool_sends_commands_queries_and_reads_alerts(
    auth: AuthServer, intake_log: EventLog
) -> None:
    # Stand-ins for intake, reporting and risk, each with its own user.
    intake = await auth.connect("intake")
    reporting = await auth.connect("reporting")
    risk = await auth.connect("risk")

    async def answer_command(msg: Msg) -> None:
        await msg.respond(json.dumps({"status": "accepted", "subject": msg.subject}).encode())

    async def answer_query(msg: Msg) -> None:
        await msg.respond(b'{"entries": []}')

    await intake.subscribe(f"{SUBJECTS.commands_all}.*", queue="intake", cb=answer_command)
    await reporting.subscribe(SUBJECTS.query("reporting", "audit"), cb=answer_query)
    await intake.flush()
    await reporting.flush()

    tool = await auth.connect("tool")
    js = tool.jetstream(timeout=5)
    live: list[Msg] = []

    async def collect(msg: Msg) -> None:
        live.append(msg)

    await tool.subscribe(SUBJECTS.alerts_all, cb=collect)
    await tool.flush()

    reply = await tool.request(SUBJECTS.command("ProposeProject") + ".tool", b"{}", timeout=5)
    assert json.loads(reply.data)["status"] == "accepted"
    reply = await tool.request(SUBJECTS.query("reporting", "audit"), b"{}", timeout=5)
    assert json.loads(reply.data) == {"entries": []}

    # Fire-and-forget: the inbox stream takes it (the ack proves it), and the tool reads
    # the result intake writes under the command id.
    ack = await js.publish(
        SUBJECTS.inbox("ProposeProject") + ".tool", b"{}", headers={"Nats-Msg-Id": "cmd-1"}
    )
    assert ack.stream == INBOX_STREAM
    await intake.jetstream().publish(SUBJECTS.result("cmd-1"), b'{"status": "accepted"}')
    result = await js.get_last_msg(RESULTS_STREAM, SUBJECTS.result("cmd-1"))
    assert json.loads(result.data or b"") == {"status": "accepted"}

    # Alerts: live, and from the stream with the tool's own durable consumer.
    raised = await risk.jetstream().publish(
        SUBJECTS.alert("warning", "risk_score"), b'{"event": "AlertRaised"}'
    )
    assert raised.stream == ALERTS_STREAM
    sub = await js.pull_subscribe(
        SUBJECTS.alerts_all,
        durable="tool-alerts",
        stream=ALERTS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    (alert,) = await sub.fetch(1, timeout=5)
    assert json.loads(alert.data) == {"event": "AlertRaised"}
    await alert.ack()
    info = await js.consumer_info(ALERTS_STREAM, "tool-alerts")
    for _ in range(50):
        if info.ack_floor.stream_seq == raised.seq:
            break
        await asyncio.sleep(0.02)
        info = await js.consumer_info(ALERTS_STREAM, "tool-alerts")
    assert info.ack_floor.stream_seq == raised.seq
    await js.delete_consumer(ALERTS_STREAM, "tool-alerts")
    for _ in range(50):
        if live:
            break
        await asyncio.sleep(0.02)
    assert [m.subject for m in live] == ["portfolio.alerts.warning.risk_score"]

    # A push consumer whose deliver subject is in the log's subjects does not write the log.
    await js.add_consumer(
        ALERTS_STREAM,
        ConsumerConfig(name="detour", deliver_subject="portfolio.events.project.DETOUR"),
    )
    await risk.jetstream().publish(SUBJECTS.alert("warning", "again"), b"{}")
    await asyncio.sleep(1.0)
    assert (await intake_log.js.stream_info(LOG_STREAM)).state.messages == 0
    assert auth.errors["tool"] == []


async def test_each_service_writes_only_its_own_decisions(
    auth: AuthServer, intake_log: EventLog
) -> None:
    allowed = {
        "intake": ["portfolio.events.project.P-1", "portfolio.events.pool.POOL-1"],
        "prioritization": ["portfolio.events.ranking.default", "portfolio.events.selection.x"],
        "ledger": ["portfolio.events.pool.POOL-1", "portfolio.events.capacity.dev"],
        "risk": ["portfolio.events.alert.A-1"],
    }
    forbidden = {
        "prioritization": ["portfolio.events.project.P-1", "portfolio.events.alert.A-1"],
        "ledger": [
            "portfolio.events.alert.A-1",
            "portfolio.events.ranking.default",
            "$KV.PORTFOLIO_LEASES.intake",  # another service's lease
        ],
        "risk": ["portfolio.events.project.P-1", "portfolio.events.pool.POOL-1"],
        "reporting": ["portfolio.events.project.P-1"],
        "admin": ["portfolio.events.project.P-1"],
    }
    clients = {user: await auth.connect(user) for user in USERS}
    before = (await intake_log.js.stream_info(LOG_STREAM)).state.messages
    for user, subjects in allowed.items():
        for subject in subjects:
            ack = await clients[user].jetstream().publish(subject, b"{}")
            assert ack.stream == LOG_STREAM, (user, subject)
    appended = sum(len(s) for s in allowed.values())
    assert (await intake_log.js.stream_info(LOG_STREAM)).state.messages == before + appended

    await asyncio.gather(
        *(
            refused(clients[user].jetstream().publish(subject, b"{}", timeout=REFUSED_WITHIN))
            for user, subjects in forbidden.items()
            for subject in subjects
        )
    )
    for user, subjects in forbidden.items():
        for subject in subjects:
            await auth.violation(user, subject)
    # A service may create the streams when missing, but that cannot change one.
    weaker = log_stream_config(SUBJECTS, 120.0).evolve(deny_purge=False)
    with pytest.raises(APIError) as exists:
        await clients["ledger"].jetstream().add_stream(weaker)
    assert exists.value.err_code == STREAM_NAME_IN_USE
    assert (await intake_log.js.stream_info(LOG_STREAM)).config.deny_purge
    # Alerts go out from risk only.
    ledger_js = clients["ledger"].jetstream(timeout=REFUSED_WITHIN)
    await refused(ledger_js.publish(SUBJECTS.alert("critical", "x"), b"{}"))
    await auth.violation("ledger", "portfolio.alerts.critical.x")
    assert (await intake_log.js.stream_info(LOG_STREAM)).state.messages == before + appended


async def test_nobody_deletes_or_purges(auth: AuthServer, intake_log: EventLog) -> None:
    """The alerts stream allows deletes and purges itself, so each refusal here is the
    permissions' doing, for every user (the log also denies them in its own config)."""
    risk = await auth.connect("risk")
    await risk.jetstream().publish(SUBJECTS.alert("warning", "risk_score"), b"{}")
    clients = {user: await auth.connect(user) for user in USERS}
    actions = []
    for nc in clients.values():
        js = nc.jetstream(timeout=REFUSED_WITHIN)
        actions += [
            js.purge_stream(ALERTS_STREAM),
            js.delete_msg(ALERTS_STREAM, 1),
            js.delete_stream(ALERTS_STREAM),
            js.delete_msg(LOG_STREAM, 1),
        ]
    await asyncio.gather(*(refused(action) for action in actions))
    for user in USERS:
        for subject in (
            f"$JS.API.STREAM.PURGE.{ALERTS_STREAM}",
            f"$JS.API.STREAM.MSG.DELETE.{ALERTS_STREAM}",
            f"$JS.API.STREAM.DELETE.{ALERTS_STREAM}",
            f"$JS.API.STREAM.MSG.DELETE.{LOG_STREAM}",
        ):
            await auth.violation(user, subject)
    assert (await intake_log.js.stream_info(ALERTS_STREAM)).state.messages == 1


async def test_the_services_run_with_their_own_users(
    auth: AuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """All five services, each with its own user, and a tool: commands in, each service's
    own decisions in the log (a ranking, a pool threshold, an alert), alerts out."""
    tool = await auth.connect("tool")
    data = tmp_path / "data"

    def user(name: str) -> dict[str, Any]:
        return {"nats_user": name, "nats_password": auth.passwords[name]}

    async with (
        running(tool, "intake", auth.url, data, **user("intake")),
        running(
            tool,
            "prioritization",
            auth.url,
            data,
            reprioritize_quiet_seconds=0.3,
            **user("prioritization"),
        ),
        running(tool, "ledger", auth.url, data, **user("ledger")),
        running(tool, "risk", auth.url, data, **user("risk")),
        running(tool, "reporting", auth.url, data, **user("reporting")),
    ):
        commands: list[tuple[str, dict[str, Any]]] = [
            (
                "DefineObjective",
                {"objective_id": "O-1", "name": "Cloud", "owner": "cio", "weight": 40},
            ),
            (
                "ConfigureScoringModel",
                {"method": "weighted", "weights": {"value": 1}, "rationale": "planning"},
            ),
            ("ProposeProject", proposal("P-1", scoring=SCORING)),
            (
                "DefineBudgetPool",
                {
                    "pool_id": "CAPEX-27",
                    "name": "Capex 2027",
                    "fiscal_year": 2027,
                    "category": "capex",
                    "amount": "1000000",
                    "currency": "EUR",
                    "owner": "cfo",
                },
            ),
            (
                "AllocateBudget",
                {
                    "pool_id": "CAPEX-27",
                    "project_id": "P-1",
                    "amount": "600000",
                    "rationale": "business case",
                },
            ),
            (
                "RecordActualCost",
                {
                    "pool_id": "CAPEX-27",
                    "project_id": "P-1",
                    "amount": "850000",
                    "external_ref": "INV-1",
                    "period": "2027-03",
                },
            ),
            (
                "IdentifyRisk",
                {
                    "risk_id": "R-1",
                    "project_id": "P-1",
                    "title": "Vendor insolvency",
                    "owner": "cpo",
                    "probability": 4,
                    "impact": 4,
                },
            ),
        ]
        for command, body in commands:
            reply = await send_as(tool, "tool", command, body)
            assert isinstance(reply, CommandAccepted), (command, reply)

        # Fire-and-forget through the inbox, the result read back by command id.
        client = PortfolioClient(tool, principal="tool", actor="tool")
        command_id = await client.send_to_inbox(
            ProposeProject.model_validate(unnamed(proposal("P-2", scoring=SCORING)))
        )
        assert isinstance(await client.result(command_id, timeout=15), CommandAccepted)

        # Each service's own decision lands in the log under its own user.
        reader = EventLog((await auth.connect("reporting")).jetstream(), SUBJECTS)
        wanted = {("prioritization", "ranking"), ("ledger", "pool"), ("risk", "alert")}
        decided: set[tuple[str, str]] = set()
        for _ in range(150):
            decided = {
                (e.envelope.actor, e.envelope.aggregate_type)
                async for e in reader.read()
                if e.envelope.actor in SERVICES
            }
            if wanted <= decided:
                break
            await asyncio.sleep(0.1)
        assert wanted <= decided, decided
        last = await reader.last_position()
        for name in ("intake", "prioritization", "ledger", "risk", "reporting"):
            await caught_up(tool, name, last)

        # The alert went out on portfolio.alerts and waits in the stream for the tool.
        sub = await tool.jetstream().pull_subscribe(
            SUBJECTS.alerts_all,
            stream=ALERTS_STREAM,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        alerts = await sub.fetch(1, timeout=5)
        assert json.loads(alerts[0].data)["event"] == "AlertRaised"

        # The portfolio CLI as an operator sees every service; with the tool's user it
        # cannot reach the control subjects, and without a user it cannot connect.
        status = await _cli(auth, "admin", "status", "--json")
        ran = ("intake", "prioritization", "ledger", "risk", "reporting")
        states = {name: s and s.get("state") for name, s in json.loads(status.stdout).items()}
        assert all(states[name] == "running" for name in ran), (states, status.stderr)
        # notify is not run here: the only reason for a non-zero exit.
        assert status.returncode == (0 if set(states) <= set(ran) else 1), status.stderr
        rejections = await _cli(auth, "admin", "audit", "--rejections", "--json")
        assert rejections.returncode == 0, rejections.stderr
        anonymous = await _cli(auth, None, "status")
        assert anonymous.returncode == 3
    assert auth.errors["tool"] == []
    # No service ran into a refusal on the way (nats-py logs each error it is told of).
    told = [
        f"{r.getMessage()} {r.exc_info[1] if r.exc_info else ''}".lower() for r in caplog.records
    ]
    assert not [t for t in told if "permissions violation" in t]


class _Completed:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def _cli(auth: AuthServer, user: str | None, *args: str) -> _Completed:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
    env["PORTFOLIO_NATS_URL"] = auth.url
    if user is not None:
        env["PORTFOLIO_NATS_USER"] = user
        env["PORTFOLIO_NATS_PASSWORD"] = auth.passwords[user]
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "portfolio"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return _Completed(process.returncode, out.decode(), err.decode())


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(ca: trustme.CA, tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    folder = tmp_path / "pki"
    folder.mkdir()
    files = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key")}
    files |= {name: folder / f"{name}.pem" for name in ("client", "client-key", "other-ca")}
    ca.cert_pem.write_to_path(files["ca"])
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(files["server"])
    server.private_key_pem.write_to_path(files["server-key"])
    client = ca.issue_cert("tool.portfolio.example")
    client.cert_chain_pems[0].write_to_path(files["client"])
    client.private_key_pem.write_to_path(files["client-key"])
    trustme.CA().cert_pem.write_to_path(files["other-ca"])
    yield files


def tls_block(pki: dict[str, Path], verify_clients: bool) -> str:
    lines = [f'  cert_file: "{pki["server"]}"', f'  key_file: "{pki["server-key"]}"']
    if verify_clients:
        lines += [f'  ca_file: "{pki["ca"]}"', "  verify: true"]
    lines.append("  timeout: 2")
    return "tls {\n" + "\n".join(lines) + "\n}\n"


@asynccontextmanager
async def tls_server(
    tmp_path: Path, pki: dict[str, Path], verify_clients: bool
) -> AsyncIterator[str]:
    config = write_auth_config(tmp_path / "conf", tls_block(pki, verify_clients))
    server = EmbeddedNats(tmp_path / "nats", extra_args=("-c", str(config)))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def connect_with(settings: PortfolioSettings) -> Client:
    return await nats.connect(
        settings.nats_servers(),
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=3,
        error_cb=_quiet,
        **settings.nats_options(),
    )


async def _quiet(_: Exception) -> None:
    pass


async def test_tls_with_the_ca_from_the_settings(
    tmp_path: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = set_passwords(monkeypatch)
    async with tls_server(tmp_path, pki, verify_clients=False) as url:
        tool: dict[str, Any] = {"nats_user": "tool", "nats_password": passwords["tool"]}
        # Without the CA the server's certificate is not trusted.
        for settings in (
            PortfolioSettings(nats_url=url, **tool),
            PortfolioSettings(nats_url=url, nats_tls_ca_file=pki["other-ca"], **tool),
        ):
            with pytest.raises(Exception) as untrusted:
                await connect_with(settings)
            assert _is_certificate_error(untrusted.value), untrusted.value
        settings = PortfolioSettings(nats_url=url, nats_tls_ca_file=pki["ca"], **tool)
        assert isinstance(settings.nats_options()["tls"], ssl.SSLContext)
        nc = await connect_with(settings)
        try:
            assert nc.is_connected and nc._server_info.get("tls_required")
            # The whole intake service over TLS with its own user; a command end to end.
            async with running(
                nc,
                "intake",
                url,
                tmp_path / "data",
                nats_user="intake",
                nats_password=passwords["intake"],
                nats_tls_ca_file=pki["ca"],
            ):
                reply = await send_as(nc, "tool", "ProposeProject", proposal("TLS-1"))
                assert isinstance(reply, CommandAccepted)
        finally:
            await nc.close()


async def test_tls_with_client_certificates(
    tmp_path: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = set_passwords(monkeypatch)
    async with tls_server(tmp_path, pki, verify_clients=True) as url:
        tool: dict[str, Any] = {"nats_user": "tool", "nats_password": passwords["tool"]}
        with pytest.raises(Exception):  # noqa: B017 - the server wants a certificate
            await connect_with(PortfolioSettings(nats_url=url, nats_tls_ca_file=pki["ca"], **tool))
        settings = PortfolioSettings(
            nats_url=url,
            nats_tls_ca_file=pki["ca"],
            nats_tls_cert_file=pki["client"],
            nats_tls_key_file=pki["client-key"],
            **tool,
        )
        nc = await connect_with(settings)
        try:
            await nc.flush()
            assert nc.is_connected
        finally:
            await nc.close()


def _is_certificate_error(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def test_nats_options_are_empty_by_default() -> None:
    assert PortfolioSettings(nats_url="nats://127.0.0.1:14222").nats_options() == {}
    options = PortfolioSettings(nats_user="tool", nats_password="x").nats_options()
    # A user's replies arrive under its own inbox prefix, the only one it may read.
    assert options == {"user": "tool", "password": "x", "inbox_prefix": "_INBOX.tool"}
    other = PortfolioSettings(nats_user="tool", nats_inbox_prefix="_INBOX.tool.ci")
    assert other.nats_options()["inbox_prefix"] == "_INBOX.tool.ci"


# --- identity: nobody sends or reads as another user ------------------------------------


def shipped_identity(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Intake's identity settings exactly as docker-compose.yml gives them."""
    env = compose_service_environment("intake")
    identity = {k: env[k] for k in ("PORTFOLIO_REQUIRE_PRINCIPAL", "PORTFOLIO_ACTOR_BINDINGS")}
    for key, value in identity.items():
        monkeypatch.setenv(key, value)
    return identity


def unnamed(body: dict[str, Any]) -> dict[str, Any]:
    """A command body that claims no actor or source (the principal is both then)."""
    return {k: v for k, v in body.items() if k not in ("actor", "source")}


async def send_as(nc: Client, user: str, command: str, body: dict[str, Any]) -> Any:
    """A command on the sender's own subject, `portfolio.cmd.<Command>.<user>`."""
    msg = await nc.request(
        f"{SUBJECTS.command(command)}.{user}", json.dumps(unnamed(body)).encode(), timeout=10
    )
    return REPLY.validate_json(msg.data)


async def test_each_impersonation_is_refused_by_the_server_or_by_intake(
    auth: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the shipped auth.conf and compose's intake settings: a tool sending as admin or
    as intake, on the plain subject, or claiming the CFO as its actor; the same from the
    inbox. Only commands under the sender's own name, for an actor it may act for, land."""
    identity = shipped_identity(monkeypatch)
    assert identity["PORTFOLIO_REQUIRE_PRINCIPAL"].lower() == "true"
    admin = await auth.connect("admin")
    tool = await auth.connect("tool")
    settings = {"nats_user": "intake", "nats_password": auth.passwords["intake"]}
    body = json.dumps(proposal("P-X", actor="cfo")).encode()
    async with running(admin, "intake", auth.url, tmp_path, **settings):
        # Refused by the server: another user's name, no name at all.
        for subject in (
            "portfolio.cmd.ProposeProject.admin",
            "portfolio.cmd.ProposeProject.intake",
            "portfolio.cmd.ProposeProject",
            "portfolio.inbox.ProposeProject.admin",
            "portfolio.inbox.ProposeProject",
        ):
            with pytest.raises(nats.errors.TimeoutError):
                await tool.request(subject, body, timeout=REFUSED_WITHIN)
            await auth.violation("tool", subject)
        # The operator cannot send as the tool either.
        with pytest.raises(nats.errors.TimeoutError):
            await admin.request("portfolio.cmd.ProposeProject.tool", body, timeout=REFUSED_WITHIN)
        await auth.violation("admin", "portfolio.cmd.ProposeProject.tool")

        # Refused by intake: the tool under its own name, claiming the CFO.
        claimed = await tool.request("portfolio.cmd.ProposeProject.tool", body, timeout=10)
        claimed_reply = REPLY.validate_json(claimed.data)
        assert isinstance(claimed_reply, CommandRejected)
        assert claimed_reply.error.code == ErrorCode.FORBIDDEN
        assert "'tool' may not act for 'cfo'" in claimed_reply.error.message
        # And from the durable inbox, under its own name, claiming the CFO.
        client = PortfolioClient(tool, principal="tool", actor="tool")
        queued = await client.send_to_inbox(
            ProposeProject.model_validate(proposal("P-Y", actor="cfo", command_id="inbox-cfo"))
        )
        from_inbox = await client.result(queued, timeout=15)
        assert isinstance(from_inbox, CommandRejected)
        assert from_inbox.error.code == ErrorCode.FORBIDDEN

        # What lands: the tool as itself; the operator for the person it names.
        itself = await send_as(tool, "tool", "ProposeProject", proposal("P-T"))
        person = await admin.request(
            "portfolio.cmd.ProposeProject.admin",
            json.dumps(proposal("P-A", actor="alice", source="cli")).encode(),
            timeout=10,
        )
        assert isinstance(itself, CommandAccepted)
        assert isinstance(REPLY.validate_json(person.data), CommandAccepted)
    reader = EventLog(admin.jetstream(), SUBJECTS)
    stored = [(e.envelope.aggregate_id, e.envelope.actor) async for e in reader.read()]
    assert stored == [("P-T", "tool"), ("P-A", "alice")]


async def test_nobody_reads_another_users_replies(auth: AuthServer, intake_log: EventLog) -> None:
    """Every user may subscribe to its own `_INBOX.<user>.>` only: the tool cannot listen
    to the operator's or a service's replies, nor to every reply; a client left on the
    default `_INBOX.` prefix gets no reply at all."""
    tool = await auth.connect("tool")
    for subject in ("_INBOX.>", "_INBOX.admin.>", "_INBOX.intake.*", "_INBOX.*.>"):
        await tool.subscribe(subject)
        await auth.violation("tool", subject, kind="subscription")

    # The operator asks a question; the tool's wildcard listener hears nothing of it.
    reporting = await auth.connect("reporting")

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"entries": ["secret"]}')

    await reporting.subscribe(SUBJECTS.query("reporting", "audit"), cb=answer)
    await reporting.flush()
    overheard: list[bytes] = []

    async def listen(msg: Msg) -> None:
        overheard.append(msg.data)

    await tool.subscribe("_INBOX.tool.>", cb=listen)  # its own: allowed
    admin = await auth.connect("admin")
    reply = await admin.request(SUBJECTS.query("reporting", "audit"), b"{}", timeout=5)
    assert reply.subject.startswith("_INBOX.admin.") and b"secret" in reply.data
    await asyncio.sleep(0.3)
    assert overheard == []

    # Connected with the default prefix, the tool's requests get no answer.
    default = await auth.connect("tool", inbox_prefix="_INBOX")
    with pytest.raises(nats.errors.TimeoutError):
        await default.request(SUBJECTS.query("reporting", "audit"), b"{}", timeout=REFUSED_WITHIN)


async def test_the_gateway_sends_as_the_callers_it_vouches_for_and_never_as_a_service(
    auth: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway authenticates HTTP callers itself and sends under their principal; the
    shipped auth.conf lets it do that for any caller's name but a service's, `tool`'s,
    `admin`'s or its own, and lets it read only its own replies and write no event."""
    shipped_identity(monkeypatch)
    admin = await auth.connect("admin")
    gateway = await auth.connect("gateway")
    settings = {"nats_user": "intake", "nats_password": auth.passwords["intake"]}
    body = json.dumps(unnamed(proposal("P-G"))).encode()
    async with running(admin, "intake", auth.url, tmp_path, **settings):
        for name in (*SERVICES, "tool", "admin", "gateway"):
            subject = f"portfolio.cmd.ProposeProject.{name}"
            with pytest.raises(nats.errors.TimeoutError):
                await gateway.request(subject, body, timeout=REFUSED_WITHIN)
            await auth.violation("gateway", subject)
        caller = await gateway.request("portfolio.cmd.ProposeProject.jira-sync", body, timeout=10)
        assert isinstance(REPLY.validate_json(caller.data), CommandAccepted)
    await gateway.publish("portfolio.events.project.P-X", b"{}")
    await auth.violation("gateway", "portfolio.events.project.P-X")
    await gateway.subscribe("_INBOX.tool.>")
    await auth.violation("gateway", "_INBOX.tool.>", kind="subscription")
    reader = EventLog(admin.jetstream(), SUBJECTS)
    stored = [(e.envelope.aggregate_id, e.envelope.actor) async for e in reader.read()]
    assert stored == [("P-G", "jira-sync")]
