"""SIGKILL a service process in the middle of catching up: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client

from contracts.queries import AuditAnswer
from shared.eventlog import EventLog
from tests.integration.helpers import (
    SUBJECTS,
    all_pages,
    caught_up,
    fill_log,
    status,
    wait_for_status,
)


def serve(service: str, nats_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "PORTFOLIO_NATS_URL": nats_url,
        "PORTFOLIO_DATA_DIR": str(data_dir),
        "PORTFOLIO_PROJECTION_BATCH_SIZE": "50",
    }
    log_file = (data_dir / f"{service}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service],
        env=env,
        stdout=log_file,
        stderr=log_file,
    )


async def test_sigkill_mid_batch_then_restart_equals_rebuild(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    end = await fill_log(event_log, 2000)
    process = serve("reporting", nats_url, tmp_path)
    try:
        killed_at = None
        for _ in range(2000):
            now = await status(nc, "reporting")
            if now is not None and now.position >= 300:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed_at = now.position
                break
            await asyncio.sleep(0.005)
        assert killed_at is not None and killed_at < end, "the kill must land mid-replay"

        process = serve("reporting", nats_url, tmp_path)
        resumed = await caught_up(nc, "reporting", end)
        assert resumed.applied_since_start < end  # it resumed from its stored position
        projects = await all_pages(nc, "reporting", "projects")
        audit = await all_pages(nc, "reporting", "audit")
        entries = [e for page in audit for e in AuditAnswer.model_validate_json(page).entries]
        assert [e.position for e in entries] == list(range(1, end + 1))  # none lost, none twice

        await nc.request(SUBJECTS.control("reporting", "replay"), b"", timeout=10)
        await wait_for_status(
            nc,
            "reporting",
            lambda s: s.rebuilds_since_start == 1 and s.state == "running" and s.position == end,
        )
        assert await all_pages(nc, "reporting", "projects") == projects
        assert await all_pages(nc, "reporting", "audit") == audit
    finally:
        process.terminate()
        process.wait(20)
