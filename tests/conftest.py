"""Fixtures shared by every layer: a real nats-server per test on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from contracts.subjects import Subjects
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def event_log(nc: Client) -> EventLog:
    log = EventLog(nc.jetstream(), Subjects())
    await log.ensure_streams()
    return log
