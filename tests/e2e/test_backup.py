"""A cold backup of the log (deploy/OPERATIONS.md, "Backup"): stop the server, copy its
JetStream store, start a server on the copy. Every event is back at its position, the log
still passes the start-up checks, appends continue after it, and a projection replayed
from zero on the copy equals the one built on the original."""

from __future__ import annotations

import shutil
from pathlib import Path

import nats
import pytest

from services.reporting.projection import ReportingProjection
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog
from tests.e2e import load
from tests.integration.helpers import SUBJECTS, fill_log, proposed_envelope

pytestmark = pytest.mark.e2e


async def test_a_copied_store_is_the_same_log(tmp_path: Path) -> None:
    original = EmbeddedNats(tmp_path / "original")
    nc = await nats.connect(original.start())
    try:
        log = EventLog(nc.jetstream(), SUBJECTS)
        await log.ensure_streams()
        end = await fill_log(log, 300)
        before = await load.read_log(nc)
        (tmp_path / "live").mkdir()
        live = await load.rebuilt_tables(nc, ReportingProjection(), tmp_path / "live", end)
    finally:
        await nc.close()
        original.stop()  # SIGTERM: the server flushes and closes its store

    # The backup, and at once its restore onto another server: a plain copy of the store.
    shutil.copytree(tmp_path / "original" / "jetstream", tmp_path / "restored" / "jetstream")
    restored = EmbeddedNats(tmp_path / "restored")
    nc = await nats.connect(restored.start())
    try:
        log = EventLog(nc.jetstream(), SUBJECTS)
        await log.ensure_streams()  # the found log is checked: no weakness, nothing lost
        assert await load.read_log(nc) == before
        assert len(before) == end == 300
        (tmp_path / "rebuilt").mkdir()
        rebuilt = await load.rebuilt_tables(nc, ReportingProjection(), tmp_path / "rebuilt", end)
        assert rebuilt == live
        appended = await log.append(proposed_envelope("P-after-restore"), 0)
        assert appended.position == end + 1
    finally:
        await nc.close()
        restored.stop()
