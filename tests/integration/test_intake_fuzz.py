"""Property: whatever bytes arrive, intake answers, keeps refusals, and appends only what it
accepts. Hypothesis throws payloads at an intake process through a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from pydantic import TypeAdapter

from contracts.base import CommandAccepted, CommandRejected, CommandReply
from contracts.registry import COMMANDS
from contracts.subjects import LOG_STREAM, REJECTIONS_STREAM, Subjects
from shared.embedded_nats import EmbeddedNats
from tests.integration.helpers import proposal

T = TypeVar("T")
REPLY = TypeAdapter[CommandAccepted | CommandRejected](CommandReply)
SUBJECTS = Subjects()


class Backend:
    """A nats-server and an intake process, driven from a loop on a background thread so
    that the synchronous hypothesis test can call into it."""

    def __init__(self, root: Path) -> None:
        self.nats = EmbeddedNats(root / "nats", port=0)
        self.url = self.nats.start()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        env = os.environ | {"PORTFOLIO_NATS_URL": self.url, "PORTFOLIO_DATA_DIR": str(root)}
        self.intake = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "intake"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(root / "intake.log").open("ab"),
        )
        self.nc: Client = self.run(nats.connect(self.url))
        self.run(self._wait_for_intake())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _wait_for_intake(self) -> None:
        for _ in range(300):
            try:
                await self.nc.request(SUBJECTS.query("intake", "status"), b"", timeout=1)
                return
            except Exception:  # noqa: BLE001 - not up yet
                await asyncio.sleep(0.1)
        raise AssertionError("intake did not start")

    async def counts(self) -> tuple[int, int]:
        js = self.nc.jetstream()
        log = await js.stream_info(LOG_STREAM)
        rejections = await js.stream_info(REJECTIONS_STREAM)
        return log.state.messages, rejections.state.messages

    async def send(self, subject: str, body: bytes) -> CommandAccepted | CommandRejected:
        msg = await self.nc.request(subject, body, timeout=10)
        return REPLY.validate_json(msg.data)

    def close(self) -> None:
        self.intake.terminate()
        self.intake.wait(20)
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.nats.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    running = Backend(tmp_path_factory.mktemp("fuzz"))
    yield running
    running.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
command_names = st.sampled_from(sorted(COMMANDS)) | st.from_regex(r"[A-Za-z]{1,20}", fullmatch=True)
valid_fields = sorted(proposal("X").keys())


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body: dict[str, Any] = proposal(draw(st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)))
    field = draw(st.sampled_from([*valid_fields, "unexpected"]))
    if draw(st.booleans()):
        body.pop(field, None)
    else:
        body[field] = draw(json_values)
    return json.dumps(body).encode()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=command_names, body=payloads())
def test_intake_answers_everything_and_appends_only_what_it_accepts(
    backend: Backend, name: str, body: bytes
) -> None:
    log_before, rejections_before = backend.run(backend.counts())
    reply = backend.run(backend.send(SUBJECTS.command(name), body))
    log_after, rejections_after = backend.run(backend.counts())
    if isinstance(reply, CommandRejected):
        assert reply.error.message
        assert log_after == log_before
        assert rejections_after == rejections_before + 1
    else:
        assert log_after == log_before + len(reply.events) - (
            len(reply.events) if reply.duplicate else 0
        )
        assert rejections_after == rejections_before
    assert backend.intake.poll() is None, "intake must never crash"
