"""Two instances of one service: one active, one standing by; kill the active one and the
standby takes over within seconds, with nothing applied twice."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from nats.aio.client import Client

from contracts.queries import AuditAnswer
from shared.eventlog import EventLog
from tests.e2e.test_kill_projection import serve
from tests.integration.helpers import all_pages, fill_log, status, wait_for_status


async def test_killing_the_active_instance_moves_the_work(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    first = serve("reporting", nats_url, tmp_path)
    try:
        active = await wait_for_status(nc, "reporting", lambda s: s.state == "running")
        assert active.pid == first.pid
        second = serve("reporting", nats_url, tmp_path)
        await asyncio.sleep(1.5)
        # The standby is connected but does not work: only the active one answers.
        for _ in range(10):
            answered = await status(nc, "reporting")
            assert answered is not None and answered.pid == first.pid
        end = await fill_log(event_log, 300)
        await wait_for_status(nc, "reporting", lambda s: s.position == end)

        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        end = await fill_log(event_log, 300, start=300)
        taken = await wait_for_status(
            nc, "reporting", lambda s: s.pid == second.pid and s.position == end, timeout=30
        )
        moved_in = time.monotonic() - killed_at
        assert moved_in < 10, f"took {moved_in:.1f} s"
        assert taken.applied_since_start == 300  # resumed where the dead one committed
        audit = [
            e
            for page in await all_pages(nc, "reporting", "audit")
            for e in AuditAnswer.model_validate_json(page).entries
        ]
        assert [e.position for e in audit] == list(range(1, end + 1))  # none twice, none lost
    finally:
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
