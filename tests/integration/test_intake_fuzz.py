"""Every NATS entry point fuzzed with one hostile generator (tests/hostile.py): thousands of
inputs to ONE running backend (a nats-server, an intake process, a reporting process
projecting the log into PostgreSQL). For each entry point: every input is answered (an
error reply; for the inbox, an outcome per message), nothing is appended for refused
input (the log grows by exactly the accepted events), the rejections stream grows by
exactly the refused count, and every service is healthy afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import TypeAdapter
from sqlalchemy.engine import make_url

from contracts.base import CommandAccepted, CommandRejected, CommandReply, ErrorCode
from contracts.queries import ServiceStatus
from contracts.registry import COMMANDS
from contracts.subjects import LOG_STREAM, REJECTIONS_STREAM, Subjects
from services import importer
from shared.commands import printable
from shared.embedded_nats import EmbeddedNats
from tests.hostile import BAD_COMMAND_NAMES, RAW_CASES, hostile_commands

T = TypeVar("T")
Reply = CommandAccepted | CommandRejected
REPLY = TypeAdapter[Reply](CommandReply)
SUBJECTS = Subjects()
#: Commands with a valid seed (tests/hostile.py), plus a few without one.
AIMED_AT = [
    "ProposeProject",
    "DefineObjective",
    "DefineBudgetPool",
    "SubmitProjectForReview",
    "ReportProgress",
    "RegisterStakeholder",
    "ApproveProject",
    "RecordActualCost",
]
#: Hostile names that can stand in a subject token (the others cannot even be sent).
TOKEN_NAMES = [n for n in BAD_COMMAND_NAMES if n and all(c.isalnum() for c in n)]
BATCH = 200
#: What `portfolio serve <name>` runs.
SERVE = (
    "import asyncio; from services.{name}.app import create_app; asyncio.run(create_app().run())"
)
BATCHES = 10  # 2,000 inputs per entry point


@pytest.fixture
def database() -> str:
    """One backend for the whole module, on PostgreSQL (set up by `backend`)."""
    return "module"


class Backend:
    """A nats-server, intake and reporting as processes, driven from a loop on a
    background thread so that the synchronous hypothesis tests can call into it."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.nats = EmbeddedNats(root / "nats", port=0)
        self.url = self.nats.start()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        env = os.environ | {
            "PORTFOLIO_NATS_URL": self.url,
            "PORTFOLIO_DATA_DIR": str(root),
            "PORTFOLIO_DATABASE_URL": database_url,
            "PORTFOLIO_DASHBOARD_PORT": "0",
        }
        self.services = {
            name: subprocess.Popen(
                [sys.executable, "-c", SERVE.format(name=name)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(root / f"{name}.log").open("ab"),
            )
            for name in ("intake", "reporting")
        }
        self.nc: Client = self.run(nats.connect(self.url))
        for name in self.services:
            self.run(self.wait_until(name, lambda s: s.state == "running"))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    async def status(self, name: str) -> ServiceStatus | None:
        try:
            msg = await self.nc.request(SUBJECTS.query(name, "status"), b"", timeout=2)
        except Exception:  # noqa: BLE001 - not up (yet)
            return None
        return ServiceStatus.model_validate_json(msg.data)

    async def wait_until(self, name: str, predicate: Any, timeout: float = 60) -> ServiceStatus:
        deadline = asyncio.get_running_loop().time() + timeout
        last = None
        while asyncio.get_running_loop().time() < deadline:
            last = await self.status(name)
            if last is not None and predicate(last):
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} never got there; last status: {last}")

    async def counts(self) -> tuple[int, int]:
        js = self.nc.jetstream()
        log = await js.stream_info(LOG_STREAM)
        rejections = await js.stream_info(REJECTIONS_STREAM)
        return log.state.messages, rejections.state.messages

    async def healthy(self) -> None:
        """Every service running, nothing skipped, the projection caught up."""
        log_messages, _ = await self.counts()
        for name, process in self.services.items():
            assert process.poll() is None, f"{name} exited"
            status = await self.wait_until(
                name, lambda s: s.state == "running" and s.position >= log_messages
            )
            assert status.skipped_events == 0 and status.last_error is None, status
        intake = await self.status("intake")
        assert intake is not None and intake.inbox is not None and intake.inbox.running
        assert intake.inbox.dead_letters_since_start == 0

    def close(self) -> None:
        for process in self.services.values():
            process.terminate()
        for process in self.services.values():
            process.wait(20)
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.nats.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Iterator[Backend]:
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = make_url(postgres_uri).set(drivername="postgresql+psycopg", database=name)
    running = Backend(tmp_path_factory.mktemp("fuzz"), url.render_as_string(False))
    yield running
    running.close()


FUZZ = settings(
    max_examples=BATCHES,
    deadline=None,
    database=None,
    # Shrinking a batch against a live backend takes many minutes: the failing batch is
    # reported as generated (its seed reproduces it).
    phases=[Phase.explicit, Phase.generate],
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def appended(replies: list[Reply]) -> int:
    return sum(len(r.events) for r in replies if isinstance(r, CommandAccepted) and not r.duplicate)


def refused(replies: list[Reply]) -> int:
    return sum(isinstance(r, CommandRejected) for r in replies)


# --- request/reply ----------------------------------------------------------------------


@FUZZ
@given(st.lists(hostile_commands(AIMED_AT), min_size=BATCH, max_size=BATCH))
def test_request_reply_answers_every_hostile_command(
    backend: Backend, cases: list[tuple[str, bytes]]
) -> None:
    backend.run(_request_reply(backend, cases))


async def _request_reply(backend: Backend, cases: list[tuple[str, bytes]]) -> None:
    sendable = [(n if n in TOKEN_NAMES or n in COMMANDS else "NoSuchCommand", b) for n, b in cases]
    log_before, rejections_before = await backend.counts()

    async def one(name: str, body: bytes) -> Reply:
        msg = await backend.nc.request(SUBJECTS.command(name), body, timeout=30)
        return REPLY.validate_json(msg.data)

    replies = await asyncio.gather(*(one(n, b) for n, b in sendable))
    for reply in replies:
        if isinstance(reply, CommandRejected):
            assert reply.error.message and reply.error.code != ErrorCode.INTERNAL, reply
    log_after, rejections_after = await backend.counts()
    assert log_after - log_before == appended(replies)
    assert rejections_after - rejections_before == refused(replies)
    await backend.healthy()


# --- the inbox --------------------------------------------------------------------------


@FUZZ
@given(st.lists(hostile_commands(AIMED_AT), min_size=BATCH, max_size=BATCH))
def test_the_inbox_answers_every_hostile_message(
    backend: Backend, cases: list[tuple[str, bytes]]
) -> None:
    backend.run(_inbox(backend, cases))


def _claimed(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    claimed = data.get("command_id") if isinstance(data, dict) else None
    return claimed if isinstance(claimed, str) else None


async def _inbox(backend: Backend, cases: list[tuple[str, bytes]]) -> None:
    """Each message's outcome is found under one of the ids it may be filed under (its
    command id, its message id, `inbox-<sequence>`); messages claiming an id another
    message claims are left out, so that every outcome belongs to one message."""
    js = backend.nc.jetstream()
    outcomes: dict[str, Reply] = {}
    arrived = asyncio.Event()
    unreadable: list[tuple[str, bytes, str]] = []

    async def collect(msg: Msg) -> None:
        try:
            outcomes[msg.subject.removeprefix("portfolio.results.")] = REPLY.validate_json(msg.data)
        except Exception as error:  # noqa: BLE001 - reported by the test, not lost in a callback
            unreadable.append((msg.subject, msg.data[:300], repr(error)[:300]))
        arrived.set()

    sub = await backend.nc.subscribe(SUBJECTS.results_all, cb=collect)
    log_before, rejections_before = await backend.counts()
    claimed: set[str] = set()
    candidates: list[set[str]] = []
    for name, body in cases:
        name = name if name in TOKEN_NAMES or name in COMMANDS else "NoSuchCommand"
        claim = _claimed(body)
        if claim is not None and (claim in claimed or claim.startswith(("fuzz-", "inbox-"))):
            continue
        message_id = f"fuzz-{uuid.uuid4().hex[:12]}"
        headers = {"Nats-Msg-Id": message_id} if len(candidates) % 3 else None
        ack = await js.publish(SUBJECTS.inbox(name), body, headers=headers)
        claimed |= {claim} if claim is not None else set()
        candidates.append({c for c in (claim, message_id, f"inbox-{ack.seq}") if c})
    deadline = asyncio.get_running_loop().time() + 20
    while missing := [c for c in candidates if not c & outcomes.keys()]:
        if asyncio.get_running_loop().time() > deadline:
            expected = set().union(*candidates)
            stray = {k: v for k, v in outcomes.items() if k not in expected}
            raise AssertionError(f"no outcome for {missing[:5]}; filed elsewhere: {stray}")
        arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), 5)
    await sub.unsubscribe()
    replies = []
    for ids in candidates:
        [filed] = ids & outcomes.keys()
        replies.append(outcomes[filed])
    await backend.wait_until(
        "intake", lambda s: s.inbox is not None and s.inbox.waiting_for_ack == 0
    )
    log_after, rejections_after = await backend.counts()
    assert log_after - log_before == appended(replies)
    assert rejections_after - rejections_before == refused(replies)
    await backend.healthy()


# --- import files -----------------------------------------------------------------------


@FUZZ
@given(
    cases=st.lists(hostile_commands(AIMED_AT), min_size=BATCH, max_size=BATCH),
    kind=st.sampled_from(["jsonl", "csv"]),
)
def test_import_files_report_every_hostile_row(
    backend: Backend, cases: list[tuple[str, bytes]], kind: str, tmp_path_factory: Any
) -> None:
    path = tmp_path_factory.mktemp("import") / f"hostile.{kind}"
    path.write_text(_jsonl(cases) if kind == "jsonl" else _csv(cases), encoding="utf-8")
    backend.run(_import(backend, path))


def _jsonl(cases: list[tuple[str, bytes]]) -> str:
    lines = []
    for name, body in cases:
        text = body.decode("utf-8", "replace")
        lines.append(f'{{"command": {json.dumps(name)}, "data": {text}}}')
    return "\n".join(lines) + "\n"


def _csv(cases: list[tuple[str, bytes]]) -> str:
    """One column per field of the decoded bodies (the raw text when not an object)."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, body in cases:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        rows.append(
            (name, data if isinstance(data, dict) else {"raw": body.decode(errors="replace")})
        )
    columns = sorted({key for _, data in rows for key in data if key and key != "command"})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["command", *columns])
    for name, data in rows:
        cells = [
            v if isinstance(v, str) else json.dumps(v) for v in (data.get(c, "") for c in columns)
        ]
        writer.writerow([printable(name), *cells])
    return printable(out.getvalue())  # keys may hold lone surrogates too


async def _import(backend: Backend, path: Path) -> None:
    try:
        loaded = importer.read_file(path)
    except importer.ImportFileError:
        return  # the whole file refused (exit 2): nothing sent, nothing to count
    log_before, rejections_before = await backend.counts()

    async def send(command: str, body: bytes) -> bytes:
        msg = await backend.nc.request(SUBJECTS.command(command), body, timeout=30)
        return bytes(msg.data)

    outcomes, _ = await importer.submit(loaded.rows, send, concurrency=32)
    assert len(outcomes) == len(loaded.rows)
    for outcome in outcomes:
        if outcome.status != "rejected":
            continue
        assert outcome.error is not None and outcome.message()
        if outcome.error.code in (ErrorCode.UNKNOWN_COMMAND, ErrorCode.PAYLOAD_TOO_LARGE):
            assert outcome.fields(), outcome  # the README promises the field
    accepted = sum(len(o.positions) for o in outcomes if o.status == "accepted")
    log_after, rejections_after = await backend.counts()
    assert log_after - log_before == accepted
    assert rejections_after - rejections_before == sum(o.status == "rejected" for o in outcomes)
    await backend.healthy()


def test_every_raw_case_in_an_import_file_is_reported(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "raw.jsonl"
    lines = [
        case.decode("utf-8", "replace").replace("\n", " ").replace("\r", " ") for case in RAW_CASES
    ]
    path.write_text("\n".join(line for line in lines if line.strip()) + "\n")
    backend.run(_import(backend, path))
